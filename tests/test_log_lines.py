"""webhook.telemetry.info, the admission line's short way: the same bytes structlog writes, and
structlog's way whenever structlog is configured otherwise.

Each case runs in a process of its own: logging is configured once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(30)

PRELUDE = """
import sys
import structlog
from webhook import telemetry
telemetry.configure_logs(fmt="json", stream=sys.stdout)
log = structlog.get_logger("webhook")
"""


def _stdout(body: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_line_written_directly_is_byte_for_byte_the_line_structlog_writes() -> None:
    structlog_line, direct_line = _stdout(
        """
        telemetry._JsonLine._timestamp = lambda self: "2026-12-02T10:00:00.000001Z"
        fields = {"uid": "u-1", "pod": None, "notes": ["service-account-late"], "ms": 0.25}
        log.info("admission", **fields)
        telemetry.info("admission", dict(fields))
        """
    )
    assert direct_line == structlog_line
    assert json.loads(direct_line) == {
        "uid": "u-1",
        "pod": None,
        "notes": ["service-account-late"],
        "ms": 0.25,
        "event": "admission",
        "level": "info",
        "timestamp": "2026-12-02T10:00:00.000001Z",
    }


def test_with_structlog_configured_otherwise_the_line_goes_through_structlog() -> None:
    # A test capturing logs, or a console format set up later, sees the line as structlog's.
    (line,) = _stdout(
        """
        from structlog.testing import capture_logs
        with capture_logs() as captured:
            telemetry.info("admission", {"uid": "u-2"})
        assert captured == [{"uid": "u-2", "event": "admission", "log_level": "info"}], captured
        telemetry.configure_logs(fmt="console", stream=sys.stdout)
        telemetry.info("admission", {"uid": "u-3"})
        """
    )
    # The captured line was not written; the console one was, in the console format.
    assert not line.startswith("{")
    assert "admission" in line
    assert "uid=u-3" in line
