"""Child processes of the tier (etcd, kube-apiserver, webhooks): started, logged, stopped by PID.

Every process writes stdout and stderr to its own log file, which outlives it so that a failing
test can show what each process said. A child is also killed by the kernel if the test process
dies without tearing down (Linux `PR_SET_PDEATHSIG`, set through util-linux `setpriv` where it
is installed), so none survives the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0


def _die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel kills it if the test process dies first.

    setpriv sets the flag and execs `argv` in the same process (same PID); a `preexec_fn`
    would do the same from Python, but forking with a callback is unsafe with threads.
    SIGKILL, not SIGTERM: etcd and kube-apiserver die together then, and a kube-apiserver
    whose etcd is gone never finishes its graceful shutdown.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def child_environment() -> dict[str, str]:
    """The environment of the processes the tiers start: no stray kubeconfig or PYTHONPATH, no
    proxy for loopback, and unbuffered Python output so the logs are complete on failure."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "PYTHONPATH")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """One child process; `stop` sends SIGTERM to its PID, then SIGKILL if it lingers."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        try:
            self._popen = subprocess.Popen(
                _die_with_parent(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self._popen.pid
        self.returncode: int | None = None

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM by PID, wait up to `timeout`, then SIGKILL; returns the exit status."""
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._popen.wait(KILL_TIMEOUT)
        self.returncode = self._popen.returncode
        if not self._log.closed:
            self._log.write(
                f"[e2e] {self.name} (pid {self.pid}) exited {self.returncode}\n".encode()
            )
            self._log.close()
        return self.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        kept = text.splitlines()[-lines:]
        return "\n".join(kept)

    def describe(self) -> str:
        state = "running" if self.running else f"exited {self._popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state}, log {self.log_path})"


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something other than None (or False), within `timeout`.

    `alive` returns a reason to give up early (a process died), or None to go on waiting.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = probe()
        except Exception as exc:  # noqa: BLE001 - kept for the timeout message
            last_error, result = exc, None
        if result is not None and result is not False:
            return result
        if alive is not None and (reason := alive()) is not None:
            raise AssertionError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
