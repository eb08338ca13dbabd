#!/usr/bin/env python3
"""Hostile clients against the real webhook process: the measurements behind issue 19's table.

Each subcommand starts its own webhook (`python -m webhook` with the default flags, the dev
ServiceAccounts file, throwaway certificates; `--flag` adds flags) and prints one JSON object.

    hostile.py bomb      [--rounds 5]      server CPU for one gzip bomb (255 KiB -> 256 MiB),
                                           and how long /healthz stalls meanwhile
    hostile.py idle      [--wait 120]      idle, slowloris, stalled-body and kept-alive
                                           connections: how many are still open after --wait
    hostile.py flood     [--abusive 20000] hold that many abusive connections (from several
                                           processes), then try --legit new clients
    hostile.py sigterm   [--rate 700]      fixed-rate load over keep-alive connections that
                                           behave like Go's HTTP client (the API server), SIGTERM
                                           in the middle: requests written and never answered
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz import REVIEW, bomb

REPO = Path(__file__).resolve().parents[2]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def review_request(uid: str = "5f0c4f3e-2a1b-4c7d-9e8f-0123456789ab") -> bytes:
    review = json.loads(json.dumps(REVIEW))
    review["request"]["uid"] = uid
    body = json.dumps(review).encode()
    return (
        b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


class Server:
    def __init__(self, directory: Path, extra: list[str], src: Path = REPO) -> None:
        subprocess.run(
            [sys.executable, "-m", "webhook", "certs", "--dir", str(directory), "--local"],
            check=True,
            capture_output=True,
        )
        self.port, self.metrics_port = free_port(), free_port()
        self.log = directory / f"webhook-{self.port}.log"
        argv = [
            sys.executable, "-m", "webhook", "--in-cluster=false", f"--port={self.port}",
            f"--metrics-port={self.metrics_port}", f"--tls-cert={directory / 'tls.crt'}",
            f"--tls-key={directory / 'tls.key'}",
            f"--service-accounts={REPO / 'dev' / 'service-accounts.yaml'}", *extra,
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=src, env=_env(src)
            )
        self.context = ssl.create_default_context(cafile=str(directory / "ca.crt"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                status, _, _ = await self.get("/readyz")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise SystemExit(f"not ready in 30 s: {self.log.read_text()[-2000:]}")

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.context)

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await self.open()
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            return await read_answer(reader)
        finally:
            writer.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def events(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                counts[json.loads(line).get("event", "?")] += 1
            except ValueError:
                counts["(not json)"] += 1
        return counts


SOURCE = REPO
"""The checkout whose webhook runs (--src: an older one, for a before/after figure)."""


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


@contextlib.asynccontextmanager
async def webhook(extra: list[str]) -> AsyncIterator[Server]:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        server = Server(Path(tmp), extra, SOURCE)
        try:
            await server.ready()
            yield server
        finally:
            server.stop()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


# --- bomb ---------------------------------------------------------------------------------------


async def cpu_settled(pid: int, window: float = 0.5, idle: float = 0.03) -> float:
    """The process's CPU seconds once it uses less than `idle` CPU seconds per `window` (the
    /healthz probes cost a few milliseconds a second)."""
    last = cpu_seconds(pid)
    while True:
        await asyncio.sleep(window)
        now = cpu_seconds(pid)
        if now - last < idle:
            return now
        last = now


async def health_prober(server: Server, stalls: list[float], stop: asyncio.Event) -> None:
    reader, writer = await server.open()
    while not stop.is_set():
        started = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_answer(reader)
        stalls.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    writer.close()


async def _bomb_round(server: Server, request: bytes, count: int) -> tuple[float, dict[str, Any]]:
    """`count` requests, each on a new connection (an answer to a body this large says
    `Connection: close`): the server's CPU seconds per request, and the last answer."""
    before = await cpu_settled(server.pid)
    last: dict[str, Any] = {}
    for _ in range(count):
        reader, writer = await server.open()
        started = time.perf_counter()
        writer.write(request)
        status, headers, answer = await read_answer(reader)
        last = {
            "status": status,
            "connection": headers.get("connection"),
            "body": answer[:120].decode(errors="replace"),
            "answered_s": round(time.perf_counter() - started, 3),
        }
        writer.close()
    after = await cpu_settled(server.pid)
    return (after - before) / count, last


async def cmd_bomb(args: argparse.Namespace) -> dict[str, Any]:
    """Per round: `--per-round` bombs, each on its own connection, the server's CPU time
    around them divided by their number (the CPU clock ticks every 10 ms), less the same for
    as many connections that send one /healthz (the TLS handshake and the request's own
    cost); then one more bomb with /healthz probed every 10 ms on another connection, for the
    longest stall."""
    body = bomb(args.inflated << 20)
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    rounds = []
    async with webhook(args.flag) as server:
        for _ in range(args.rounds):
            per_bomb, last = await _bomb_round(server, request, args.per_round)
            per_connection, _ = await _bomb_round(server, probe, args.per_round)
            stalls: list[float] = []
            stop = asyncio.Event()
            prober = asyncio.create_task(health_prober(server, stalls, stop))
            await asyncio.sleep(0.2)
            reader, writer = await server.open()
            writer.write(request)
            await read_answer(reader)
            writer.close()
            await asyncio.sleep(0.2)
            stop.set()
            await prober
            rounds.append(
                {
                    **last,
                    "server_cpu_s": round(per_bomb, 4),
                    "server_cpu_s_connection_only": round(per_connection, 4),
                    "server_cpu_s_bomb_less_connection": round(per_bomb - per_connection, 4),
                    "healthz_max_ms": round(max(stalls) * 1000, 1) if stalls else None,
                }
            )
    return {
        "bomb_bytes": len(body),
        "inflates_to_mib": args.inflated,
        "median_server_cpu_s": median([r["server_cpu_s"] for r in rounds]),
        "median_server_cpu_s_bomb_less_connection": median(
            [r["server_cpu_s_bomb_less_connection"] for r in rounds]
        ),
        "median_healthz_max_ms": median([r["healthz_max_ms"] or 0 for r in rounds]),
        "rounds": rounds,
    }


# --- idle ---------------------------------------------------------------------------------------

KINDS = ("tcp-only", "tls-silent", "slowloris", "body-stall", "kept-alive")


async def hold(server: Server, kind: str, closed_at: dict[int, float], key: int,
               started: float) -> None:  # fmt: skip
    """Open one abusive connection of `kind` and record when the server closes it."""
    try:
        if kind == "tcp-only":
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        else:
            reader, writer = await server.open()
    except (OSError, ssl.SSLError, TimeoutError):
        closed_at[key] = -1.0  # never connected
        return
    try:
        if kind == "slowloris":
            writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\n")
            while True:
                writer.write(b"X-a: b\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 5) == b"":
                        break
        elif kind == "body-stall":
            writer.write(
                b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"apiVersion"'
            )
            await writer.drain()
            await reader.read()  # any answer, then EOF
        elif kind == "kept-alive":
            writer.write(review_request())
            await read_answer(reader)
            await reader.read()
        else:
            await reader.read()
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    closed_at[key] = time.monotonic() - started
    writer.close()


async def cmd_idle(args: argparse.Namespace) -> dict[str, Any]:
    async with webhook(args.flag) as server:
        closed_at: dict[int, float] = {}
        started = time.monotonic()
        tasks = []
        kinds = {}
        for index in range(args.each * len(KINDS)):
            kind = KINDS[index % len(KINDS)]
            kinds[index] = kind
            tasks.append(asyncio.create_task(hold(server, kind, closed_at, index, started)))
        await asyncio.sleep(args.wait)
        still_open: Counter[str] = Counter()
        closed_after: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for index, kind in kinds.items():
            if index not in closed_at:
                still_open[kind] += 1
            elif closed_at[index] >= 0:
                closed_after[kind].append(closed_at[index])
        fds = open_fds(server.pid)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        status, _, _ = await server.get("/healthz")
    return {
        "wait_s": args.wait,
        "per_kind": args.each,
        "still_open": {kind: still_open[kind] for kind in KINDS},
        "closed_after_s_median": {k: round(median(v), 1) for k, v in closed_after.items() if v},
        "server_fds_at_the_end": fds,
        "healthz_after": status,
    }


# --- flood --------------------------------------------------------------------------------------


def abuser(port: int, count: int, ca: str, hold_seconds: float) -> None:
    """Child process: open `count` abusive connections of every kind and keep them."""

    async def main() -> None:
        context = ssl.create_default_context(cafile=ca)

        class Fake:
            pass

        server: Any = Fake()
        server.port = port

        async def tls_open() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=context), 60
            )

        server.open = tls_open
        closed: dict[int, float] = {}
        started = time.monotonic()
        tasks = []
        for index in range(count):
            tasks.append(asyncio.create_task(hold(server, KINDS[index % len(KINDS)], closed,
                                                  index, started)))  # fmt: skip
            if index % 200 == 199:
                await asyncio.sleep(0.05)
        await asyncio.sleep(hold_seconds)
        print(json.dumps({"opened": count, "closed_by_server": len(closed)}), flush=True)
        os._exit(0)

    asyncio.run(main())


async def legit(server: Server, patience: float) -> str:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(server.open(), patience)
        writer.write(review_request())
        status, _, _ = await asyncio.wait_for(read_answer(reader), patience)
        writer.close()
        return f"{status} in {time.monotonic() - started:.1f}s"
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__
    except TimeoutError:
        return "timeout"


async def cmd_flood(args: argparse.Namespace) -> dict[str, Any]:
    async with webhook(args.flag) as server:
        ca = str(server.log.parent / "ca.crt")
        per = args.abusive // args.processes
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "_abuser",
                str(server.port),
                str(per),
                ca,
                str(args.hold),
                stdout=subprocess.DEVNULL,
            )
            for _ in range(args.processes)
        ]
        await asyncio.sleep(args.ramp)
        fds_held = open_fds(server.pid)
        results = await asyncio.gather(*(legit(server, args.timeout) for _ in range(args.legit)))
        answered = sum(1 for r in results if r.startswith("200"))
        for child in children:
            child.send_signal(signal.SIGTERM)
            await child.wait()
        await asyncio.sleep(1)
        events = server.events()
        status, _, _ = await server.get("/healthz")
    return {
        "abusive": per * args.processes,
        "server_fds_while_held": fds_held,
        "legit_answered": f"{answered} / {args.legit}",
        "legit_results": dict(Counter(r.split(" in ")[0] for r in results)),
        "legit_latency": sorted(r for r in results if " in " in r)[-3:],
        "emfile_in_log": sum(n for e, n in events.items() if "EMFILE" in e or "Too many" in e),
        "healthz_after": status,
        "events": {k: v for k, v in events.items() if k != "admission"},
    }


# --- sigterm ------------------------------------------------------------------------------------


class GoLikePool:
    """Keep-alive connections used as Go's net/http Transport does: the most recently used
    idle connection first; one the server has closed while idle is dropped before use (Go's
    read loop sees the EOF); a new one is dialled when none is idle; at most 25 stay idle
    (client-go's MaxIdleConnsPerHost), the rest are closed after their answer. A POST is not
    retried once written, so a request written on a connection that then closes without an
    answer is lost."""

    MAX_IDLE = 25

    def __init__(self, server: Server) -> None:
        self.server = server
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.lost: list[float] = []
        self.answered = 0
        self.refused = 0
        self.closes = 0
        self.statuses: Counter[int] = Counter()

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer = self.idle.pop()
            if not (reader.at_eof() or writer.is_closing()):
                return reader, writer
            writer.close()
        return None

    async def send(self, request: bytes, since: float) -> None:
        kept = self._reusable()
        if kept is None:
            try:
                kept = await asyncio.wait_for(self.server.open(), 5)
            except (OSError, ssl.SSLError, TimeoutError):
                self.refused += 1  # nothing written: the API server would try another endpoint
                return
        reader, writer = kept
        try:
            writer.write(request)
            status, headers, _ = await asyncio.wait_for(read_answer(reader), 15)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            self.lost.append(round(time.monotonic() - since, 3))
            writer.close()
            return
        self.answered += 1
        self.statuses[status] += 1
        if headers.get("connection", "").lower() == "close":
            self.closes += 1
            writer.close()
        elif len(self.idle) >= self.MAX_IDLE:
            writer.close()
        else:
            self.idle.append((reader, writer))


async def sigterm_round(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311  (a reproducible corpus, not a secret)
    async with webhook(args.flag) as server:
        pool = GoLikePool(server)
        request = review_request()
        # Warm the pool: the API server holds several idle connections.
        await asyncio.gather(*(pool.send(request, 0) for _ in range(args.connections)))
        start = time.monotonic()
        signal_at = start + args.before + rng.random() * 0.5
        signalled: float | None = None
        tasks = set()
        i = 0
        while server.proc.poll() is None and time.monotonic() - start < args.before + 30:
            due = start + i / args.rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if signalled is None and time.monotonic() >= signal_at:
                server.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
            task = asyncio.create_task(pool.send(request, signalled or time.monotonic()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        exited_after = time.monotonic() - (signalled or start)
        returncode = server.proc.wait()
        events = server.events()
    return {
        "sent": i,
        "answered": pool.answered,
        "lost": len(pool.lost),
        "lost_s_after_sigterm": pool.lost[:20],
        "not_delivered_connect_refused": pool.refused,
        "answers_with_connection_close": pool.closes,
        "statuses": dict(pool.statuses),
        "exit_status": returncode,
        "exited_s_after_sigterm": round(exited_after, 2),
        "admissions_logged": events["admission"],
    }


async def cmd_sigterm(args: argparse.Namespace) -> dict[str, Any]:
    rounds = [await sigterm_round(args, seed) for seed in range(args.rounds)]
    return {
        "rate": args.rate,
        "connections": args.connections,
        "rounds": len(rounds),
        "lost_total": sum(r["lost"] for r in rounds),
        "lost_per_round": [r["lost"] for r in rounds],
        "details": rounds,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_abuser":
        port, count, ca, hold_seconds = sys.argv[2:6]
        abuser(int(port), int(count), ca, float(hold_seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--flag", action="append", default=[], help="extra webhook flag")
    common.add_argument("--src", type=Path, default=REPO, help="run the webhook of this checkout")
    commands = parser.add_subparsers(dest="command", required=True)
    bomb_cmd = commands.add_parser("bomb", parents=[common])
    bomb_cmd.add_argument("--rounds", type=int, default=5)
    bomb_cmd.add_argument("--per-round", type=int, default=10)
    bomb_cmd.add_argument("--inflated", type=int, default=256, help="MiB")
    idle = commands.add_parser("idle", parents=[common])
    idle.add_argument("--wait", type=float, default=120)
    idle.add_argument("--each", type=int, default=20, help="connections of each kind")
    flood = commands.add_parser("flood", parents=[common])
    flood.add_argument("--abusive", type=int, default=20_000)
    flood.add_argument("--processes", type=int, default=3)
    flood.add_argument("--ramp", type=float, default=60, help="seconds to open them")
    flood.add_argument("--hold", type=float, default=600)
    flood.add_argument("--legit", type=int, default=100)
    flood.add_argument("--timeout", type=float, default=10)
    sig = commands.add_parser("sigterm", parents=[common])
    sig.add_argument("--rate", type=float, default=700)
    sig.add_argument("--rounds", type=int, default=5)
    sig.add_argument("--connections", type=int, default=16)
    sig.add_argument("--before", type=float, default=1.0, help="load before the signal, s")
    args = parser.parse_args()
    global SOURCE  # noqa: PLW0603 - one setting for the whole run
    SOURCE = args.src.resolve()
    command = {"bomb": cmd_bomb, "idle": cmd_idle, "flood": cmd_flood, "sigterm": cmd_sigterm}
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.get_loop().set_exception_handler(_quiet)
        result = runner.run(command[args.command](args))
    print(json.dumps(result, indent=1))


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """uvloop reports a TLS write on a connection the server has just closed as a "fatal
    error"; for a hostile client that is expected, not news."""
    if isinstance(context.get("exception"), (OSError, RuntimeError, ssl.SSLError)):
        return
    loop.default_exception_handler(context)


if __name__ == "__main__":
    main()
