#!/usr/bin/env python3
"""Scale benchmark: the real webhook process against a fake API server with N ServiceAccounts.

For each size N (default 10, 10,000 and 100,000):

1. start the fake API server (`tests/kube/fakeapi.py`) in a process of its own, so that its
   memory is not counted, serving N ServiceAccounts of realistic size (uid, creationTimestamp,
   labels, Helm annotations, managedFields: about 1 KB of JSON each; one in ten has a role);
2. start the webhook exactly as a Deployment would (`python -m webhook --in-cluster=false
   --kube-api=http://127.0.0.1:PORT --tls-cert ... --tls-key ...`);
3. poll https://127.0.0.1:PORT/readyz every 10 ms and record the time from process start to the
   first 200, and from the fake's first list request to that 200 (both clocks are Linux's
   CLOCK_MONOTONIC, shared by every process);
4. read VmHWM (peak RSS) and VmRSS of the webhook from /proc/PID/status at ready, after a
   settle time, and after the latency run;
5. send `--requests` sequential /mutate requests over one keep-alive TLS connection, each an
   AdmissionReview of a Pod using an annotated ServiceAccount (after `--warmup` unmeasured
   ones), and report p50/p99 of the client-side round trip;
6. time `Store.service_account` itself on a store of N entries (random keys, in this process).

Sizes are measured in `--rounds` interleaved rounds (10, 10k, 100k, 10, 10k, 100k, ...) so that
a slow minute of a shared machine does not land on one size only; the table shows the median of
each figure over the rounds, and the p50 range. Prints a Markdown table (and, with --json, every
round's raw figures). Run from the repository root:

    .venv/bin/python benchmarks/scale/run_scale.py
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.ports import free_port  # noqa: E402 - importable once the checkout is on the path

SERVICE_ACCOUNT = ("team-0000", "app-000000")  # annotated at every size (index 0)
MIB = 1024 * 1024


@dataclasses.dataclass
class Row:
    service_accounts: int
    start_to_ready: float
    list_to_ready: float
    list_seconds: float
    pages: int
    cpu_at_ready: float
    peak_rss_at_ready: float
    peak_rss: float
    rss_at_ready: float
    steady_rss: float
    rss_after_requests: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    lookup_ns: float
    bytes_per_item: float
    listed_items: int
    load_before: float
    """1-minute load average before the run: other work on the machine skews every figure."""


def status_kib(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def percentile(ordered: list[float], p: float) -> float:
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@contextlib.contextmanager
def fake_api(count: int) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kube.fakeapi", "--service-accounts", str(count)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout is not None else ""
        if not line:
            raise RuntimeError("the fake API server did not start")
        yield int(json.loads(line)["port"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback, http
        return json.loads(answer.read())


def https(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)


def wait_ready(port: int, context: ssl.SSLContext, process: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the webhook exited with {process.returncode}")
        connection = https(port, context)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return time.monotonic()
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.01)
    raise RuntimeError("the webhook never became ready")


def review_body() -> bytes:
    namespace, name = SERVICE_ACCOUNT
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "918ef1dc-928f-4525-99ef-988389f263c3",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "web-", "namespace": namespace},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [{"name": "web", "image": "nginx:1.27"}],
                },
            },
        },
    }
    return json.dumps(review).encode()


def admission_latencies(
    port: int, context: ssl.SSLContext, requests: int, warmup: int
) -> list[float]:
    body = review_body()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    connection = https(port, context)
    timings = []
    try:
        for index in range(warmup + requests):
            started = time.perf_counter()
            connection.request("POST", "/mutate", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"/mutate answered {response.status}: {data[:200]!r}")
            if index == 0 and b'"patch"' not in data:
                raise RuntimeError("the annotated ServiceAccount was not mutated")
            if index >= warmup:
                timings.append(elapsed)
    finally:
        connection.close()
    return timings


def store_lookup_ns(count: int, lookups: int = 200_000) -> float:
    """Nanoseconds per Store.service_account on a store of `count` entries (random keys)."""
    from tests.kube.fakeapi import realistic_service_accounts
    from webhook.admission.entries import parse_service_account
    from webhook.config import MutationConfig
    from webhook.sources.store import Store

    config = MutationConfig()
    store = Store(config)
    keys = []
    entries = {}
    for obj in realistic_service_accounts(count):
        metadata = obj["metadata"]
        keys.append((metadata["namespace"], metadata["name"]))
        entries[f"{metadata['namespace']}/{metadata['name']}"] = parse_service_account(
            metadata.get("annotations"), config
        )
    store.replace_entries(entries)
    chosen = [random.choice(keys) for _ in range(lookups)]  # noqa: S311
    lookup = store.service_account
    best = math.inf
    for _ in range(5):
        started = time.perf_counter_ns()
        for namespace, name in chosen:
            lookup(namespace, name)
        best = min(best, (time.perf_counter_ns() - started) / lookups)
    return best


def measure(count: int, certs: Path, args: argparse.Namespace, logs: Path) -> Row:
    load_before = os.getloadavg()[0]
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with fake_api(count) as api_port:
        port, metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        log = (logs / f"webhook-{count}.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "webhook",
            "--in-cluster=false",
            f"--kube-api=http://127.0.0.1:{api_port}",
            f"--port={port}",
            f"--metrics-port={metrics_port}",
            f"--tls-cert={certs / 'tls.crt'}",
            f"--tls-key={certs / 'tls.key'}",
        ]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        try:
            ready = wait_ready(port, context, process)
            at_ready = status_kib(process.pid)
            cpu_at_ready = cpu_seconds(process.pid)
            requests = fetch_json(f"http://127.0.0.1:{api_port}/fake/requests")
            lists = [r for r in requests if r["kind"] == "list" and r["at"] >= started]
            first_list = min(r["at"] for r in lists)
            last_page = max(r["at"] for r in lists)
            time.sleep(args.settle)
            steady = status_kib(process.pid)
            timings = sorted(admission_latencies(port, context, args.requests, args.warmup))
            after = status_kib(process.pid)
            page = fetch_json(f"http://127.0.0.1:{api_port}/api/v1/serviceaccounts?limit=500")
            items = page["items"]
            per_item = len(json.dumps(items, separators=(",", ":"))) / max(1, len(items))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    listed = 0
    for line in (logs / f"webhook-{count}.log").read_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "listed" and event.get("source") == "serviceaccounts":
                listed = int(event["items"])
                break
    return Row(
        service_accounts=count,
        start_to_ready=ready - started,
        list_to_ready=ready - first_list,
        list_seconds=last_page - first_list,
        pages=len(lists),
        cpu_at_ready=cpu_at_ready,
        peak_rss_at_ready=at_ready["VmHWM"] / 1024,
        peak_rss=after["VmHWM"] / 1024,
        rss_at_ready=at_ready["VmRSS"] / 1024,
        steady_rss=steady["VmRSS"] / 1024,
        rss_after_requests=after["VmRSS"] / 1024,
        p50_ms=percentile(timings, 50) * 1000,
        p99_ms=percentile(timings, 99) * 1000,
        mean_ms=sum(timings) / len(timings) * 1000,
        lookup_ns=store_lookup_ns(count),
        bytes_per_item=per_item,
        listed_items=listed,
        load_before=load_before,
    )


def median_row(rows: list[Row]) -> Row:
    figures = {
        field.name: statistics.median(getattr(row, field.name) for row in rows)
        for field in dataclasses.fields(Row)
    }
    return Row(**figures)


def table(rounds: dict[int, list[Row]]) -> str:
    header = (
        "| ServiceAccounts | start → ready | first list → ready | CPU at ready | peak RSS "
        "| steady RSS | RSS after requests | /mutate p50 (range) | /mutate p99 | Store lookup |"
    )
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, rows in rounds.items():
        row = median_row(rows)
        low, high = min(r.p50_ms for r in rows), max(r.p50_ms for r in rows)
        lines.append(
            f"| {size:,} | {row.start_to_ready:.2f} s | {row.list_to_ready:.2f} s "
            f"| {row.cpu_at_ready:.2f} s | {row.peak_rss:.0f} MiB | {row.steady_rss:.0f} MiB "
            f"| {row.rss_after_requests:.0f} MiB | {row.p50_ms:.2f} ms ({low:.2f} to {high:.2f}) "
            f"| {row.p99_ms:.2f} ms | {row.lookup_ns:.0f} ns |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes",
        default="10,10000,100000",
        help="comma-separated ServiceAccount counts (default 10,10000,100000)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured /mutate requests")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured /mutate requests")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before steady RSS")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    parser.add_argument("--keep-logs", help="directory to keep the webhook logs in")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        certs = Path(scratch) / "certs"
        subprocess.run(
            [sys.executable, "-m", "webhook", "certs", "--dir", str(certs), "--local"],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        logs = Path(args.keep_logs) if args.keep_logs else Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        rounds: dict[int, list[Row]] = {size: [] for size in sizes}
        for number, size in ((n, s) for n in range(1, args.rounds + 1) for s in sizes):
            row = measure(size, certs, args, logs)
            rounds[size].append(row)
            print(
                f"# round {number}, {size:,}: {row.pages} list pages in {row.list_seconds:.2f} s, "
                f"{row.listed_items:,} items listed, {row.bytes_per_item:.0f} bytes of JSON "
                f"per item, peak RSS at ready {row.peak_rss_at_ready:.0f} MiB, "
                f"p50/p99/mean {row.p50_ms:.2f}/{row.p99_ms:.2f}/{row.mean_ms:.2f} ms, "
                f"load average before {row.load_before:.2f}",
                file=sys.stderr,
                flush=True,
            )
    print(table(rounds))
    if args.json:
        raw = {size: [dataclasses.asdict(row) for row in rows] for size, rows in rounds.items()}
        print(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
