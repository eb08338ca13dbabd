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


def test_lines_of_many_threads_come_out_whole_and_in_order_per_thread() -> None:
    # Lines longer than a pipe's atomic write (4 KiB), from eight threads and the admission
    # path at once, to a pipe read while they write: every line whole, none lost.
    lines = _stdout(
        """
        import threading
        def worker(n):
            for i in range(200):
                log.warning("bulk", worker=n, i=i, pad="x" * 20000)
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for i in range(200):
            telemetry.info("admission", {"uid": f"u-{i}", "pad": "y" * 20000})
        for t in threads:
            t.join()
        """
    )
    records = [json.loads(line) for line in lines]
    assert len(records) == 8 * 200 + 200
    for n in range(8):
        mine = [r["i"] for r in records if r.get("worker") == n]
        assert mine == list(range(200))
    admissions = [r["uid"] for r in records if r["event"] == "admission"]
    assert admissions == [f"u-{i}" for i in range(200)]


def test_a_write_cut_short_is_finished() -> None:
    # os.write may take part of a line (a signal, a full pipe): the rest follows, in order.
    (line,) = _stdout(
        """
        import os
        real = os.write
        def short(fd, data):
            return real(fd, bytes(data[:7]))
        os.write = short
        telemetry.info("admission", {"uid": "u-4", "pad": "z" * 100})
        os.write = real
        """
    )
    assert json.loads(line)["pad"] == "z" * 100


def test_a_stream_without_a_file_descriptor_is_written_through_structlog() -> None:
    # A text stream over a BytesIO has a buffer but no descriptor: the lines still arrive.
    (line,) = _stdout(
        """
        import io
        import json
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, write_through=True)
        telemetry.configure_logs(fmt="json", stream=stream)
        telemetry.info("admission", {"uid": "u-5"})
        log.info("other", n=1)
        stream.flush()
        sys.stdout.write(json.dumps(raw.getvalue().decode().splitlines()) + "\\n")
        """
    )
    written = [json.loads(item) for item in json.loads(line)]
    assert [(r["event"], r.get("uid")) for r in written] == [("admission", "u-5"), ("other", None)]


FULL_PIPE = """
import os
r, w = os.pipe()
os.set_blocking(w, False)  # as whoever shares the descriptor may leave it
telemetry.configure_logs(fmt="json", stream=os.fdopen(w, "w"))
filled = 0
while True:
    try:
        filled += os.write(w, b"f" * 4096)
    except BlockingIOError:
        break
"""


def test_a_non_blocking_log_that_is_full_is_waited_for() -> None:
    # The reader catches up a moment later: the line waits for it and arrives whole.
    line, lost = _stdout(
        FULL_PIPE
        + textwrap.dedent(
            """
        import threading, time
        got = bytearray()
        def drain():
            time.sleep(0.3)
            while not got.endswith(b"\\n"):
                got.extend(os.read(r, 1 << 16))
        reader = threading.Thread(target=drain)
        reader.start()
        telemetry.info("admission", {"uid": "u-6", "pad": "p" * 10000})
        reader.join()
        print(got[filled:].decode(), end="")
        print(telemetry.lines_lost())
        """
        )
    )
    assert json.loads(line)["pad"] == "p" * 10000
    assert lost == "0"


def test_a_line_the_log_never_takes_is_counted_and_the_next_starts_on_its_own_line() -> None:
    # One page of room, then nobody reads: the first 4 KiB go out, the rest is dropped after
    # the wait; the next line, the log still full, is dropped at once (one wait, not one per
    # admission); once the log is read again, a line goes out on its own line.
    lines = _stdout(
        FULL_PIPE
        + textwrap.dedent(
            """
        import time
        telemetry._LineWriter.WAIT_SECONDS = 0.3
        os.read(r, 4096)
        started = time.monotonic()
        telemetry.info("admission", {"uid": "u-7", "pad": "q" * 10000})
        waited = time.monotonic() - started
        started = time.monotonic()
        telemetry.info("admission", {"uid": "u-8"})
        dropped_in = time.monotonic() - started
        lost = telemetry.lines_lost()
        got = bytearray(os.read(r, 1 << 20))
        telemetry.info("admission", {"uid": "u-9"})
        got += os.read(r, 1 << 20)
        print(got[filled - 4096:].decode(), end="")
        print(lost, waited >= 0.3, dropped_in < 0.1)
        """
        )
    )
    torn, whole, counted = lines
    assert torn.startswith('{"uid":"u-7"')
    assert len(torn) == 4096
    assert json.loads(whole)["uid"] == "u-9"
    assert counted == "2 True True"


def test_a_torn_line_ended_by_the_next_ones_newline_adds_no_blank_line() -> None:
    # Line 1 goes out in part; of line 2 only the newline that ends line 1 does; line 3
    # follows directly, without a second newline.
    lines = _stdout(
        """
        import errno, os
        real = os.write
        plan = [lambda fd, data: real(fd, bytes(data[:5])), BrokenPipeError(errno.EPIPE, "gone"),
                lambda fd, data: real(fd, bytes(data[:1])), OSError(errno.ENOSPC, "full")]
        def planned(fd, data):
            step = plan.pop(0) if plan and fd == 1 else real  # not stderr's notice
            if isinstance(step, OSError):
                raise step
            return step(fd, data)
        os.write = planned
        telemetry.info("admission", {"uid": "u-10"})
        telemetry.info("admission", {"uid": "u-11"})
        telemetry.info("admission", {"uid": "u-12"})
        os.write = real
        print(telemetry.lines_lost())
        """
    )
    torn, whole, lost = lines  # a blank line would be a fourth
    assert torn == '{"uid'
    assert json.loads(whole)["uid"] == "u-12"
    assert lost == "2"


def test_standard_library_records_go_through_the_same_writer() -> None:
    # aiohttp's and the Kubernetes client's records: whole JSON lines on the same descriptor,
    # and counted like ours when the log refuses them (no "--- Logging error ---" per record).
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import logging, sys
                from webhook import telemetry
                telemetry.configure_logs(fmt="json", stream=sys.stdout)
                logging.getLogger("aiohttp.server").error("written %s", "whole")
                telemetry.configure_logs(fmt="json", stream=open("/dev/full", "w"))
                for _ in range(3):
                    logging.getLogger("aiohttp.server").error("refused")
                print(telemetry.lines_lost())
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written, lost = done.stdout.splitlines()
    record = json.loads(written)
    assert (record["event"], record["logger"], record["level"]) == (
        "written whole",
        "aiohttp.server",
        "error",
    )
    assert lost == "3"
    assert [json.loads(line)["event"] for line in done.stderr.splitlines()] == ["log_lines_lost"]


def test_a_later_configuration_without_a_descriptor_leaves_the_old_writer_behind() -> None:
    # configure_logs again (a console format, a stream without a descriptor): the earlier
    # writer's count and descriptor are no longer this process's log.
    (counts,) = _stdout(
        """
        import io
        telemetry.configure_logs(fmt="json", stream=open("/dev/full", "w"))
        telemetry.info("admission", {"uid": "u-13"})
        before = telemetry.lines_lost()
        telemetry.configure_logs(fmt="console", stream=io.StringIO())
        telemetry.info("admission", {"uid": "u-14"})
        print(before, telemetry.lines_lost())
        """
    )
    assert counts == "1 0"


@pytest.mark.parametrize(
    ("server", "metrics"),
    [
        ("webhook", "webhook.server.metrics:Metrics"),
        ("broker", "webhook.broker.server:BrokerMetrics"),
        ("agent", "webhook.agent.server:AgentMetrics"),
    ],
)
def test_each_server_exports_the_lines_lost_under_its_own_name(server: str, metrics: str) -> None:
    # Read at scrape time from the writer configure_logs set up; stderr names the same series,
    # and no other server's name is exported.
    module, _, name = metrics.partition(":")
    others = [other for other in ("webhook", "broker", "agent") if other != server]
    script = f"""
        import structlog
        from prometheus_client import CollectorRegistry
        from webhook import telemetry
        from {module} import {name}
        telemetry.configure_logs(fmt="json", stream=open("/dev/full", "w"), server="{server}")
        registry = CollectorRegistry()
        {name}(registry)
        def lost(server):
            return registry.get_sample_value(f"pod_identity_{{server}}_log_lines_lost_total")
        print(lost("{server}"))
        telemetry.info("admission", {{"uid": "u-15"}})
        structlog.get_logger("webhook").warning("other")
        print(lost("{server}"), *map(lost, {others!r}))
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0", "2 None None"]
    (notice,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert notice["event"] == "log_lines_lost"
    assert notice["detail"].endswith(f"counted in pod_identity_{server}_log_lines_lost_total")
