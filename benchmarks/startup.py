#!/usr/bin/env python3
"""Start-up and idle memory of the webhook with the file source, several versions in one run.

    .venv/bin/python benchmarks/startup.py                      # this checkout, 5 starts
    git archive main webhook | tar -x -C /tmp/main-webhook
    .venv/bin/python benchmarks/startup.py ours ours@/tmp/main-webhook --rounds 7

Each start runs `python -m webhook` as `make run` does (file source: dev/service-accounts.yaml,
a throw-away certificate), pinned to CPU 0 like `upstream/run.py`, and measures the time from
process start to the first mutated answer to dev/review.json (polled every 5 ms) and VmRSS
0.5 s later, when it idles. Targets alternate; medians are reported with the load average.
The cluster source is measured by `upstream/run.py` (it needs kube-apiserver and etcd).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python")
sys.path.insert(0, str(REPO))

from tests.support.ports import free_port  # noqa: E402


def post(port: int, body: bytes, context: ssl.SSLContext) -> dict[str, object]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=0.5)
    try:
        connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        answer: dict[str, object] = json.loads(connection.getresponse().read())
        return answer
    finally:
        connection.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_once(
    target: str, certs: Path, body: bytes, context: ssl.SSLContext
) -> tuple[float, float]:
    port, metrics_port = free_port(), free_port()
    argv = [
        "taskset", "-c", "0", PY, "-m", "webhook", "--in-cluster=false",
        f"--port={port}", f"--metrics-port={metrics_port}",
        f"--tls-cert={certs / 'tls.crt'}", f"--tls-key={certs / 'tls.key'}",
        f"--service-accounts={REPO / 'dev' / 'service-accounts.yaml'}",
    ]  # fmt: skip
    env = dict(os.environ)
    if "@" in target:
        env["PYTHONPATH"] = target.partition("@")[2]
    started = time.monotonic()
    # Run from the certificate directory: `python -m` puts the working directory first on
    # sys.path, which would shadow an `ours@DIR` target's PYTHONPATH.
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=certs
    )
    startup = 0.0
    try:
        deadline = started + 30
        while not startup and time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"{target} exited with {process.returncode} during start-up")
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                answer = post(port, body, context)
                response = answer.get("response")
                if isinstance(response, dict) and "patch" in response:
                    startup = time.monotonic() - started
                    continue
            time.sleep(0.005)
        if not startup:
            raise SystemExit(f"{target} did not mutate within 30 s")
        time.sleep(0.5)
        return startup, rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", default=["ours"], help="ours, ours@DIR")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    body = json.dumps(json.loads((REPO / "dev" / "review.json").read_text())).encode()
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in args.targets}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        certs = Path(tmp)
        subprocess.run(
            [PY, "-m", "webhook", "certs", "--dir", str(certs), "--local"],
            check=True, stdout=subprocess.DEVNULL, cwd=certs,
        )  # fmt: skip
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        for _ in range(args.rounds):
            for target in args.targets:
                results[target].append(start_once(target, certs, body, context))
            loads.append(os.getloadavg()[0])
    print(f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f}")
    print("| target | start-up to first mutated answer (s), median [min-max] | idle RSS (MiB) |")
    print("|---|---|---|")
    for target, runs in results.items():
        starts = [s for s, _ in runs]
        rss = [r for _, r in runs]
        print(
            f"| {target} | {statistics.median(starts):.3f} [{min(starts):.3f}-{max(starts):.3f}]"
            f" | {statistics.median(rss):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
