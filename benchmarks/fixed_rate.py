#!/usr/bin/env python3
"""Open-loop, fixed-rate HTTPS load generator for the benchmarks (standard library only).

`--body` may be given several times for a request mix: request i sends body i mod N, so the
bodies are sent in equal shares, interleaved.

Debian ships wrk 4 (closed loop, no `-R`), not wrk2, so fixed-rate latency comes from here:

* N keep-alive HTTP/1.1 connections over TLS, opened (handshakes done) before the clock starts;
* request i is scheduled at start + i / rate, whatever happened to the previous ones (open loop);
* each connection takes the next unclaimed slot when it is free, sleeps until the slot is due
  and sends; when a slot is already due when a connection frees up (the server fell behind),
  the request goes out at once and its latency is counted from the *scheduled* time, so time
  spent queued behind a slow server is not hidden (no coordinated omission);
* when a request goes out on time, latency is counted from the moment it was written: asyncio
  timers wake up to ~1 ms late (epoll has millisecond timeouts), and that lag belongs to this
  client, not to the server. The client's timer lag is reported separately (`send_lag`).

Latency is from the scheduled (or actual) send to the last byte of the response body.
Prints one JSON object on stdout; exits 1 if any response was not HTTP 200, any request failed,
or (unless --no-check-rate) the achieved rate fell more than 5 % short of the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import ssl
import sys
import time
from pathlib import Path


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process, from /proc (Linux); None without a pid."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Run:
    def __init__(self, args: argparse.Namespace, requests: list[bytes]) -> None:
        self.args = args
        self.requests = requests
        self.slots = itertools.count()
        self.interval = 1.0 / args.rate
        self.start = 0.0
        self.measure_from = 0.0
        self.end = 0.0
        self.latencies: list[float] = []  # seconds, measured slots only
        self.send_lags: list[float] = []  # client timer lag for on-time sends
        self.late_sends = 0  # slots already due when a connection freed up
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.sent = 0
        self.last_done = 0.0

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = time.perf_counter
        while True:
            slot = next(self.slots)
            scheduled = self.start + slot * self.interval
            if scheduled >= self.end:
                return
            free = clock()
            if free < scheduled:
                await asyncio.sleep(scheduled - free)
                sent = clock()
                origin = sent
                on_time = True
            else:
                sent = free
                origin = scheduled
                on_time = False
            writer.write(self.requests[slot % len(self.requests)])
            self.sent += 1
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = parse_head(head)
                await read_body(reader, length)
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
            ) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            done = clock()
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if scheduled >= self.measure_from:
                self.last_done = max(self.last_done, done)
                self.latencies.append(done - origin)
                if on_time:
                    self.send_lags.append(sent - scheduled)
                else:
                    self.late_sends += 1


def parse_head(head: bytes) -> tuple[int, int | None]:
    """Status and Content-Length; length None for a chunked body (Go's net/http sends one when
    the handler's answer does not fit its write buffer)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"transfer-encoding":
            chunked = value.strip().lower() == b"chunked"
    if length is None and not chunked:
        raise ValueError("response without Content-Length or chunked encoding")
    return status, length


async def read_body(reader: asyncio.StreamReader, length: int | None) -> None:
    if length is not None:
        await reader.readexactly(length)
        return
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent
            return
        await reader.readexactly(size + 2)


def build_request(args: argparse.Namespace, body: bytes) -> bytes:
    head = (
        f"POST {args.path} HTTP/1.1\r\n"
        f"Host: {args.server_name}:{args.port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def main_async(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, object]:
    requests = [build_request(args, body) for body in bodies]
    context = ssl.create_default_context(cafile=args.cafile)
    run = Run(args, requests)
    connections = []
    try:
        for _ in range(args.connections):
            opened = asyncio.open_connection(
                args.host, args.port, ssl=context, server_hostname=args.server_name
            )
            connections.append(await asyncio.wait_for(opened, timeout=10))
        # One request per connection before the clock starts: handshake and first-use costs.
        for i, (reader, writer) in enumerate(connections):
            writer.write(requests[i % len(requests)])
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            status, length = parse_head(head)
            await read_body(reader, length)
            if status != 200:
                raise SystemExit(f"fixed_rate: priming request got HTTP {status}")
        cpu_before = cpu_seconds(args.server_pid)
        run.start = time.perf_counter() + 0.05
        run.measure_from = run.start + args.warmup
        run.end = run.measure_from + args.duration
        tasks = [asyncio.create_task(run.connection(r, w)) for r, w in connections]
        budget = args.warmup + args.duration + args.timeout
        done, pending = await asyncio.wait(tasks, timeout=budget)
        elapsed = time.perf_counter() - run.start
        cpu_after = cpu_seconds(args.server_pid)
        for task in pending:
            task.cancel()
        if pending:
            run.errors.append(
                f"{len(pending)} connection(s) still busy {args.timeout} s after the end"
            )
        for task in done:
            if task.exception() is not None:
                run.errors.append(repr(task.exception()))
    finally:
        for _, writer in connections:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    lat = sorted(run.latencies)
    lags = sorted(run.send_lags)
    measured = len(lat)
    non_200 = sum(n for code, n in run.statuses.items() if code != 200)
    ms = 1000.0
    return {
        "target_rate": args.rate,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "body_bytes": len(bodies[0]) if len(bodies) == 1 else [len(body) for body in bodies],
        "measured_requests": measured,
        # Completions over the time from the first measured slot to the last response: below
        # the target when the server could not keep up and a backlog drained after the end.
        "achieved_rate": round(measured / max(run.last_done - run.measure_from, args.duration), 1)
        if measured
        else 0.0,
        "latency_ms": {
            "p50": round(percentile(lat, 50) * ms, 3),
            "p90": round(percentile(lat, 90) * ms, 3),
            "p99": round(percentile(lat, 99) * ms, 3),
            "p99.9": round(percentile(lat, 99.9) * ms, 3),
            "max": round(lat[-1] * ms, 3) if lat else math.nan,
            "mean": round(sum(lat) / measured * ms, 3) if lat else math.nan,
        },
        "late_sends": run.late_sends,
        # The server's CPU over warm-up + measurement: share of one core, and per request.
        "server_cpu_pct": round(100 * (cpu_after - cpu_before) / elapsed, 1)
        if cpu_before is not None and cpu_after is not None
        else None,
        "server_cpu_us_per_request": round(1e6 * (cpu_after - cpu_before) / max(run.sent, 1), 1)
        if cpu_before is not None and cpu_after is not None
        else None,
        "send_lag_ms": {
            "p50": round(percentile(lags, 50) * ms, 3),
            "p99": round(percentile(lags, 99) * ms, 3),
        },
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "non_200": non_200,
        "errors": run.errors[:5],
        "error_count": len(run.errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-name", default="localhost", help="TLS SNI / name to verify")
    parser.add_argument("--cafile", required=True, help="CA bundle that signed the server cert")
    parser.add_argument("--path", default="/mutate")
    parser.add_argument(
        "--body", required=True, action="append", help="a JSON body file (repeatable: a mix)"
    )
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=10.0, help="grace after the end")
    parser.add_argument("--no-check-rate", action="store_true")
    parser.add_argument("--server-pid", type=int, help="report this process's CPU use (Linux)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this benchmark only targets the loopback interface")
    if args.rate <= 0 or args.duration <= 0 or args.connections <= 0:
        parser.error("--rate, --duration and --connections must be positive")

    # This client's own collector pauses would show up as server latency: none during the run.
    gc.collect()
    gc.freeze()
    gc.disable()
    bodies = [Path(b).read_bytes() for b in args.body]
    result = asyncio.run(main_async(args, bodies))
    print(json.dumps(result))
    failed = result["non_200"] or result["error_count"]
    achieved = result["achieved_rate"]
    short = isinstance(achieved, float) and achieved < 0.95 * args.rate
    if short and not args.no_check_rate:
        print(f"fixed_rate: achieved {result['achieved_rate']}/s of {args.rate}/s", file=sys.stderr)
    if failed:
        print(
            f"fixed_rate: {result['non_200']} non-200, {result['error_count']} errors",
            file=sys.stderr,
        )
    return 1 if failed or (short and not args.no_check_rate) else 0


if __name__ == "__main__":
    sys.exit(main())
