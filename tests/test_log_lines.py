"""webhook.telemetry's JSON lines: what one turn of the event loop logs is written in one
write, in order, and nothing is lost when the loop stops or the process exits.

Each case runs in a process of its own (logging is configured once per process), with stdout
a pipe as in a container, and reports the write(2) calls its stdout saw."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(30)

PRELUDE = """
import asyncio, io, logging, os, sys
import structlog, uvloop
from webhook import telemetry

class Recording(io.RawIOBase):
    '''stdout's file descriptor, with every write it is handed recorded on stderr.'''
    def writable(self):
        return True
    def write(self, data):
        data = bytes(data)
        os.write(2, b"WRITE %d\\n" % data.count(b"\\n"))
        return os.write(1, data)

sys.stdout = io.TextIOWrapper(io.BufferedWriter(Recording()), write_through=True)
telemetry.configure_logs(fmt="json", stream=sys.stdout)
log = structlog.get_logger("webhook")
"""


def _run(body: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON lines the script printed, and how many lines each write carried."""
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    writes = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("WRITE")]
    return [json.loads(line) for line in done.stdout.splitlines()], writes


def _events(lines: list[dict[str, Any]]) -> list[str]:
    return [line["event"] for line in lines]


def test_the_lines_of_one_turn_go_out_in_one_write_at_its_end() -> None:
    lines, writes = _run(
        """
        async def main():
            for n in range(5):
                log.info("admission", n=n)
            written_before_the_turn_ended = telemetry._lines._pending != []
            await asyncio.sleep(0)
            log.info("next_turn", pending=written_before_the_turn_ended)
            await asyncio.sleep(0)
        uvloop.run(main())
        """
    )
    assert _events(lines) == ["admission"] * 5 + ["next_turn"]
    assert [line["n"] for line in lines[:5]] == [0, 1, 2, 3, 4]
    assert lines[5]["pending"] is True
    assert writes == [5, 1]


def test_without_an_event_loop_each_line_is_written_at_once() -> None:
    lines, writes = _run(
        """
        log.info("first")
        log.warning("second")
        """
    )
    assert _events(lines) == ["first", "second"]
    assert writes == [1, 1]


def test_a_turn_that_logs_more_than_the_limit_writes_as_it_goes() -> None:
    lines, writes = _run(
        """
        async def main():
            for n in range(400):
                log.info("admission", n=n, padding="x" * 400)
        asyncio.run(main())
        """
    )
    assert [line["n"] for line in lines] == list(range(400))
    assert len(writes) > 2  # 400 lines of ~450 bytes: more than 64 KiB pending, twice at least
    assert sum(writes) == 400


def test_standard_library_lines_stay_after_the_lines_logged_before_them() -> None:
    lines, _ = _run(
        """
        async def main():
            log.info("before")
            logging.getLogger("aiohttp.server").error("from the standard library")
            log.info("after")
        asyncio.run(main())
        """
    )
    assert _events(lines) == ["before", "from the standard library", "after"]


def test_lines_still_waiting_when_the_loop_stops_are_written_at_exit() -> None:
    lines, writes = _run(
        """
        loop = asyncio.new_event_loop()  # runs nothing scheduled after its last turn began
        def last():
            log.info("last_turn")
            loop.stop()  # the write was due in the next turn, which never comes
        loop.call_soon(last)
        loop.run_forever()
        assert telemetry._lines._pending
        """
    )
    assert _events(lines) == ["last_turn"]
    assert writes == [1]


def test_flush_logs_writes_what_waits_before_an_immediate_exit() -> None:
    lines, _ = _run(
        """
        async def main():
            log.warning("second_signal", action="exiting now")
            telemetry.flush_logs()
            os._exit(1 - 1)  # no atexit handlers, no loop turn: only what flush_logs wrote
        asyncio.run(main())
        """
    )
    assert _events(lines) == ["second_signal"]


def test_lines_logged_from_another_thread_are_not_held_for_the_loop() -> None:
    lines, writes = _run(
        """
        import threading
        async def main():
            log.info("in_the_loop")
            thread = threading.Thread(target=lambda: log.info("from_a_thread"))
            thread.start()
            thread.join()
            # The thread found the loop's write already due and left its line with it.
            await asyncio.sleep(0)
            other = threading.Thread(target=lambda: log.info("alone"))
            other.start()
            other.join()
        asyncio.run(main())
        """
    )
    assert _events(lines) == ["in_the_loop", "from_a_thread", "alone"]
    assert writes == [2, 1]
