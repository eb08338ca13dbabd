"""The webhook as a process: `python -m webhook` on free ports, and real TLS clients for it.

Shared by the process-tier modules (test_process, test_drain, test_bodies, test_limits). The
fixtures `files` and `launch` are in conftest.py. Clients here are the standard library's:
http.client for one request, and `Conversation`, a raw keep-alive TLS socket, when a test
must see exactly what goes over one connection (headers such as `Connection: close`, or the
end of the stream).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from tests.http.helpers import JSON, metric_value, wait_until_sync

STARTUP_DEADLINE = 30.0  # a cold start on a loaded 2-core machine took over 10 s


@dataclasses.dataclass
class Files:
    cert: Path
    key: Path
    service_accounts: Path
    ca: bytes


@dataclasses.dataclass
class Webhook:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    stdout: Path
    stderr: Path
    ca: bytes

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def logs(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed: the process writes JSON lines and nothing else."""
        text = self.stdout.read_text()
        if not text.endswith("\n"):  # a line still being written
            text = text.rpartition("\n")[0]
        entries = []
        for line in text.splitlines():
            entry = json.loads(line)
            assert isinstance(entry, dict)
            entries.append(entry)
        return entries

    def events(self) -> list[str]:
        return [entry["event"] for entry in self.logs()]

    def connection(self, timeout: float = 10) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cadata=self.ca.decode())
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def mutate(self, review: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, body = self.request("POST", "/mutate", json.dumps(review).encode(), JSON)
        return status, json.loads(body)

    def metrics(self, path: str = "/metrics") -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the webhook exited {self.proc.returncode}:\n{self.output()}")
        try:
            status, _ = self.request("GET", "/readyz")
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def wait_for_event(self, event: str, timeout: float = 5) -> None:
        wait_until_sync(lambda: event in self.events(), timeout=timeout, what=f"log {event!r}")


Launch = Callable[..., Webhook]


def argv(files: Files, port: int, metrics_port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "webhook",
        "--in-cluster=false",
        f"--port={port}",
        f"--metrics-port={metrics_port}",
        f"--tls-cert={files.cert}",
        f"--tls-key={files.key}",
        f"--service-accounts={files.service_accounts}",
        # No endpoint removal to wait for here, and a quick SIGTERM lets the process write its
        # coverage data; a test that wants the delay passes its own (the last flag wins).
        "--shutdown-delay=0s",
        *extra,
    ]


class Parked:
    """A /mutate request fully sent and waiting for its answer on its own connection."""

    def __init__(self, webhook: Webhook, review: dict[str, Any]) -> None:
        self.connection = webhook.connection(timeout=15)
        try:
            self.connection.request("POST", "/mutate", json.dumps(review).encode(), JSON)
            self.sent = time.monotonic()
            # Barrier: once a later request has been answered, the single-threaded server has
            # accepted and read the earlier connection too: the parked request is in its handler.
            assert webhook.request("GET", "/healthz") == (200, b"ok")
            time.sleep(0.05)
        except BaseException:
            self.connection.close()
            raise

    def answer(self) -> tuple[int, dict[str, Any]]:
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


# --- raw conversations ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes

    @property
    def closes(self) -> bool:
        """The server said it closes the connection after this answer."""
        return self.headers.get("connection", "").lower() == "close"

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/mutate",
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> bytes:
    """One HTTP/1.1 request; `length` overrides Content-Length (to promise more than is sent)."""
    fields = {"Host": "webhook", **JSON, **(headers or {})}
    fields["Content-Length"] = str(len(body) if length is None else length)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode() + b"\r\n" + body


class Conversation:
    """One keep-alive TLS connection to the webhook, byte for byte."""

    def __init__(self, webhook: Webhook, timeout: float = 10) -> None:
        context = ssl.create_default_context(cadata=webhook.ca.decode())
        raw = socket.create_connection(("127.0.0.1", webhook.port), timeout=timeout)
        try:
            self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer:
        """The next answer; raises EOFError when the server closed the connection instead."""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return Answer(int(lines[0].split(" ", 2)[1]), headers, body)

    def exchange(self, data: bytes) -> Answer:
        self.send(data)
        return self.answer()

    def closed_by_server(self, within: float) -> bool:
        """Whether the server ends the connection within `within` seconds (EOF or reset)."""
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True

    def _fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLEOFError) as exc:
            raise EOFError(f"the server closed the connection: {exc}") from None
        if not data:
            raise EOFError("the server closed the connection")
        self._buffer += data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def metric(webhook: Webhook, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the webhook's /metrics; 0 when absent."""
    status, text = webhook.metrics()
    assert status == 200
    return metric_value(text, name, labels) or 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
