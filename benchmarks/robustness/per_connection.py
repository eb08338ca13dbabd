#!/usr/bin/env python3
"""What one open TLS connection costs the webhook in resident memory, step by step.

Starts the webhook under memory_probe.py (reports every second in its log), opens
`--connections` keep-alive TLS connections and walks them through steps, waiting for the
server to settle after each, then prints the probe's report (RSS, glibc's heap and mmapped
chunks, resident memory by kind of mapping) and the RSS per connection since the step before:

    ready -> connected (handshake only) -> one review each -> one big body each (--big KiB,
    answered 400; above 32 KiB with `Connection: close`, so the client reconnects) -> another
    review each -> idle 15 s -> all closed, 15 s later

    .venv/bin/python benchmarks/robustness/per_connection.py --connections 1000 --big 300
    .venv/bin/python benchmarks/robustness/per_connection.py --env MALLOC_ARENA_MAX=1 \
        --flag=--max-connections=4096   # above the connections: none evicted between steps

Diagnostic only (not a timed test); the soak (soak.py) gives the figures under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz import REVIEW, _request
from soak import read_answer, rss_kib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def start(
    directory: Path, env: dict[str, str], flags: list[str], src: Path
) -> tuple[subprocess.Popen[bytes], int, Path]:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "--dir", str(directory), "--local"],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    import socket

    def free() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    port = free()
    log = directory / "webhook.log"
    argv = [
        sys.executable, str(HERE / "memory_probe.py"), "--every", "1", "--",
        "--in-cluster=false", f"--port={port}", f"--metrics-port={free()}",
        f"--tls-cert={directory / 'tls.crt'}", f"--tls-key={directory / 'tls.key'}",
        f"--service-accounts={REPO / 'dev' / 'service-accounts.yaml'}",
        *flags,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=src,
            env={**os.environ, "PYTHONPATH": str(src), **env},
        )  # fmt: skip
    return proc, port, log


def last_report(log: Path) -> dict[str, object]:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith('{"t":'):
            return dict(json.loads(line))
    return {}


@dataclass
class Steps:
    """The connections, and a report per step."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    context: ssl.SSLContext
    connections: int
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    """HTTP statuses; 0: no answer; -1: reconnects after a `Connection: close` answer."""
    previous: int = 0

    async def settle(self, step: str, wait: float = 3.0) -> None:
        await asyncio.sleep(wait)
        rss = rss_kib(self.proc.pid)
        per = (rss - self.previous) / self.connections if self.previous else 0.0
        self.previous = rss
        entry: dict[str, object] = {"step": step, "rss_mib": round(rss / 1024, 1)}
        entry["kib_per_conn"] = round(per, 1)
        entry.update({k: v for k, v in last_report(self.log).items() if k not in ("t", "rss_mib")})
        print(json.dumps(entry), flush=True)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.context)

    async def one(self, i: int, request: bytes) -> None:
        reader, writer = self.streams[i]
        writer.write(request)
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()  # may be answered and closed before this side is done
        try:
            status, headers, _ = await read_answer(reader)
        except (OSError, asyncio.IncompleteReadError):
            status, headers = 0, {"connection": "close"}
        self.statuses[status] += 1
        if headers.get("connection", "").lower() == "close":
            self.statuses[-1] += 1
            writer.close()
            self.streams[i] = await self.connect()

    async def each(self, request: bytes) -> None:
        """One request on every connection, 100 at a time."""
        for first in range(0, len(self.streams), 100):
            last = min(first + 100, len(self.streams))
            await asyncio.gather(*(self.one(i, request) for i in range(first, last)))


async def walk(steps: Steps, big: int) -> None:
    review = _request(json.dumps(REVIEW).encode())
    large = _request(b'{"x": "' + b"a" * (big * 1024) + b'"}')
    await steps.settle("ready", 0)
    steps.streams = [await steps.connect() for _ in range(steps.connections)]
    await steps.settle("connected")
    await steps.each(review)
    await steps.settle("review")
    await steps.each(large)
    await steps.settle(f"big {big} KiB")
    await steps.each(review)
    await steps.settle("review again")
    await steps.settle("idle 15 s", 15)
    for _, writer in steps.streams:
        writer.close()
    await steps.settle("closed 15 s", 15)


async def main(args: argparse.Namespace) -> None:
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="perconn-") as tmp:
        proc, port, log = start(Path(tmp), env, args.flag, args.src)
        try:
            for _ in range(300):
                if last_report(log):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            context = ssl.create_default_context(cafile=str(Path(tmp) / "ca.crt"))
            context.check_hostname = False
            steps = Steps(proc, port, log, context, args.connections)
            await walk(steps, args.big)
            print(json.dumps({"statuses": steps.statuses, "env": env, "flags": args.flag}))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if args.keep_log:
                await asyncio.to_thread(shutil.copyfile, log, args.keep_log)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--big", type=int, default=300, help="KiB of the big body")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the webhook")
    parser.add_argument("--keep-log", help="copy the webhook's log (and probe lines) here")
    parser.add_argument("--flag", action="append", default=[], help="extra webhook flag")
    parser.add_argument("--src", type=Path, default=REPO, help="run the webhook of this checkout")
    asyncio.run(main(parser.parse_args()))
