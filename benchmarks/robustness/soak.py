#!/usr/bin/env python3
"""Soak: a million fuzzed reviews over a thousand keep-alive TLS connections, RSS sampled.

Starts the webhook exactly as `make run` does but with JSON logs to a file and the default
flags (`python -m webhook --in-cluster=false --port=P --metrics-port=M --tls-cert=...
--tls-key=... --service-accounts=dev/service-accounts.yaml`), or attaches to a running one
(`--port`, `--pid`, `--ca`). Every connection sends its next request as soon as it has its
answer (closed loop). Each answer is checked against what a correct server may say for that
case (`fuzz.py`); a 200 must echo the request's uid.

Counted: 5xx answers; answers a case does not allow; connection errors, i.e. a request that
got no answer because the server closed or reset a connection that its last answer had kept
alive; timeouts (no answer in 30 s). A `Connection: close` answer is followed by a reconnect
and is not an error. RSS (VmRSS) of the server is sampled every `--sample` seconds.

    .venv/bin/python benchmarks/robustness/soak.py --requests 1000000 --connections 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz import Case, corpus

REPO = Path(__file__).resolve().parents[2]
ANSWER_TIMEOUT = 30.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    wrong_uid: int = 0
    connection_errors: int = 0
    connection_error_kinds: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    reconnects: int = 0
    closes_announced: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


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


class Driver:
    def __init__(
        self, args: argparse.Namespace, cases: list[Case], context: ssl.SSLContext
    ) -> None:
        self.args = args
        self.cases = cases
        self.context = context
        self.tally = Tally()
        self.remaining = args.requests

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", self.args.port, ssl=self.context, limit=1 << 20
                    ),
                    ANSWER_TIMEOUT,
                )
            except (OSError, TimeoutError) as exc:
                self.tally.connection_error_kinds[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.1)

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311  (a reproducible corpus, not a secret)
        tally = self.tally
        reader, writer = await self.connect()
        while self.remaining > 0:
            self.remaining -= 1
            case = rng.choice(self.cases)
            started = time.perf_counter()
            tally.sent += 1
            try:
                writer.write(case.request)
                await writer.drain()
                status, headers, body = await asyncio.wait_for(read_answer(reader), ANSWER_TIMEOUT)
            except TimeoutError:
                tally.timeouts += 1
                tally.note(f"timeout: {case.kind}")
                writer.close()
                reader, writer = await self.connect()
                tally.reconnects += 1
                continue
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                tally.connection_errors += 1
                tally.connection_error_kinds[type(exc).__name__] += 1
                tally.note(f"connection error after {case.kind}: {exc!r}")
                writer.close()
                reader, writer = await self.connect()
                tally.reconnects += 1
                continue
            tally.latencies.append(time.perf_counter() - started)
            tally.answered += 1
            tally.statuses[status] += 1
            if status not in case.allowed:
                tally.unexpected[f"{case.kind} -> {status}"] += 1
                tally.note(f"{case.kind} -> {status}: {body[:200]!r}")
            if status == 200 and case.uid is not None:
                try:
                    uid = json.loads(body)["response"]["uid"]
                except (ValueError, KeyError, TypeError):
                    uid = None
                if uid != case.uid:
                    tally.wrong_uid += 1
                    tally.note(f"{case.kind}: uid {uid!r} for {case.uid!r}")
            if headers.get("connection", "").lower() == "close":
                tally.closes_announced += 1
                writer.close()
                reader, writer = await self.connect()
                tally.reconnects += 1
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def sample(
    pid: int, every: float, samples: list[dict[str, float]], started: float, tally: Tally
) -> None:
    while True:
        with contextlib.suppress(OSError):
            samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "answered": tally.answered,
                    "rss_mib": round(rss_kib(pid) / 1024, 1),
                    "fds": open_fds(pid),
                    "cpu_s": round(cpu_seconds(pid), 1),
                }
            )
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
        await asyncio.sleep(every)


def start_server(
    directory: Path, extra: list[str], src: Path
) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "--dir", str(directory), "--local"],
        check=True,
        capture_output=True,
    )
    import socket

    def free() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    port, metrics = free(), free()
    log = directory / "webhook.log"
    argv = [
        sys.executable, "-m", "webhook", "--in-cluster=false", f"--port={port}",
        f"--metrics-port={metrics}", f"--tls-cert={directory / 'tls.crt'}",
        f"--tls-key={directory / 'tls.key'}",
        f"--service-accounts={REPO / 'dev' / 'service-accounts.yaml'}", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=src,
            env={**os.environ, "PYTHONPATH": str(src)},
        )
    return proc, port, metrics, log


def scrape(metrics_port: int) -> dict[str, float]:
    """The webhook's own counters of what it closed, aborted and answered."""
    import urllib.request

    wanted = (
        "pod_identity_webhook_connections_closed",
        "pod_identity_webhook_client_aborts",
        "pod_identity_webhook_open_connections",
        "http_request_count",
    )
    found = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(wanted):
                    name, _, value = line.rpartition(" ")
                    found[name] = float(value)
    except OSError as exc:
        found["error"] = 0.0
        found[str(exc)] = 0.0
    return found


async def wait_ready(port: int, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = await read_answer(reader)
            writer.close()
            if status == 200:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("the webhook did not become ready in 30 s")


def scan_log(log: Path) -> dict[str, object]:
    events: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    tracebacks = 0
    shown: list[str] = []
    with log.open("rb") as lines:
        for line in lines:
            if b"Traceback" in line or b'"exception"' in line:
                tracebacks += 1
                if len(shown) < 3:
                    shown.append(line.decode(errors="replace")[-600:])
            try:
                entry = json.loads(line)
            except ValueError:
                events["(not json)"] += 1
                continue
            events[entry.get("event", "?")] += 1
            levels[entry.get("level", "?")] += 1
    return {"tracebacks": tracebacks, "traceback_tails": shown,
            **{f"event:{k}": v for k, v in events.items()},
            **{f"level:{k}": v for k, v in levels.items()}}  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    cases = corpus(args.corpus, args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        directory = Path(tmp)
        proc = None
        metrics_port = 0
        log = directory / "webhook.log"
        if args.port:
            ca = args.ca
        else:
            proc, args.port, metrics_port, log = start_server(
                directory, args.flag, args.src.resolve()
            )
            args.pid = proc.pid
            ca = str(directory / "ca.crt")
        context = ssl.create_default_context(cafile=ca)
        try:
            await wait_ready(args.port, context)
            rss_ready = rss_kib(args.pid) / 1024
            driver = Driver(args, cases, context)
            samples: list[dict[str, float]] = []
            started = time.monotonic()
            cpu_before = cpu_seconds(args.pid)
            sampler = asyncio.create_task(
                sample(args.pid, args.sample, samples, started, driver.tally)
            )
            workers = [driver.worker(args.seed * 100_000 + i) for i in range(args.connections)]
            await asyncio.gather(*workers)
            elapsed = time.monotonic() - started
            cpu_used = cpu_seconds(args.pid) - cpu_before
            sampler.cancel()
            await asyncio.sleep(2)  # let the server close what it closes
            rss_end = rss_kib(args.pid) / 1024
            tally = driver.tally
            server_metrics = scrape(metrics_port) if metrics_port else {}
            result: dict[str, object] = {
                "requests": tally.sent,
                "answered": tally.answered,
                "connections": args.connections,
                "seconds": round(elapsed, 1),
                "answers_per_s": round(tally.answered / elapsed),
                "server_cpu_s": round(cpu_used, 1),
                "5xx": sum(n for s, n in tally.statuses.items() if s >= 500),
                "statuses": dict(sorted(tally.statuses.items())),
                "unexpected": dict(tally.unexpected.most_common(20)),
                "wrong_uid": tally.wrong_uid,
                "connection_errors": tally.connection_errors,
                "connection_error_kinds": dict(tally.connection_error_kinds),
                "timeouts": tally.timeouts,
                "closes_announced": tally.closes_announced,
                "p50_ms": round(percentile(tally.latencies, 50) * 1000, 2),
                "p99_ms": round(percentile(tally.latencies, 99) * 1000, 2),
                "rss_ready_mib": round(rss_ready, 1),
                "rss_end_mib": round(rss_end, 1),
                "rss_peak_mib": round(hwm_kib(args.pid) / 1024, 1),
                "rss_samples": samples,
                "server_metrics": server_metrics,
                "examples": tally.examples,
            }
        finally:
            if proc is not None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                result["log"] = scan_log(log)
                if args.keep_log:
                    shutil.copyfile(log, args.keep_log)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--corpus", type=int, default=20_000, help="distinct fuzzed cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=float, default=10.0, help="RSS sampling period, s")
    parser.add_argument("--port", type=int, help="attach to a running webhook on this port")
    parser.add_argument("--pid", type=int, help="its process id (for RSS), with --port")
    parser.add_argument("--ca", help="the CA file that signed its certificate, with --port")
    parser.add_argument("--flag", action="append", default=[], help="extra webhook flag")
    parser.add_argument("--src", type=Path, default=REPO, help="run the webhook of this checkout")
    parser.add_argument("--out", help="write the JSON result here too")
    parser.add_argument("--keep-log", help="copy the webhook's log here at the end")
    args = parser.parse_args()
    if args.port and not (args.pid and args.ca):
        parser.error("--port needs --pid and --ca")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
