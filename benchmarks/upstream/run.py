#!/usr/bin/env python3
"""Side-by-side benchmark of upstream's Go webhook and ours, in one run on this machine.

    .venv/bin/python benchmarks/upstream/run.py              # full run (about 3 minutes)
    BENCH_QUICK=1 .venv/bin/python benchmarks/upstream/run.py  # about 40 s (CI smoke)

Both servers get the same set-up: the same serving certificate (TLS 1.2+, keep-alive), the same
kubeconfig and RBAC identity against the same real kube-apiserver + etcd (tests/e2e/cluster.py),
so the same ServiceAccount cache ($BENCH_SERVICE_ACCOUNTS ServiceAccounts, one in ten
annotated), the same flags (`--aws-default-region=us-west-2`), each pinned to CPU
$BENCH_SERVER_CPU with taskset. The load generators run on CPU $BENCH_LOAD_CPU (kube-apiserver
and etcd are moved there too, so the server's core only runs the server). The request mix, in
equal interleaved shares: a small Pod (one container, annotated ServiceAccount), a large Pod (ten
containers with variables, ports, probes, resources and mounts), an unannotated Pod.

Measured per server: start-up (process start to the first mutated answer; upstream has no
readiness endpoint, so the same definition is used for both), admissions/s at saturation (wrk,
closed loop, $BENCH_CONNECTIONS connections, median of $BENCH_SAT_RUNS runs; the server has one
core, so this is also throughput per core), CPU time per admission (utime + stime of the server
from /proc over the saturation runs), p50/p99/p99.9 latency at fixed rates (open loop, no
coordinated omission: ../fixed_rate.py), and RSS (idle after start-up, after the load, peak).
Prints a Markdown table with ours/upstream ratios, and how busy the server's core was with other
work during each saturation run (the machine may be shared).

Environment (defaults in brackets): BENCH_QUICK=1; BENCH_SAT_SECONDS [10, quick 3];
BENCH_SAT_RUNS [3, quick 1]; BENCH_RATE_SECONDS [10, quick 3]; BENCH_RATES ["100 500 1000"];
BENCH_WARMUP_SECONDS [2, quick 1]; BENCH_CONNECTIONS [16]; BENCH_ROUNDS [1, servers interleaved,
medians reported]; BENCH_TARGETS ["upstream ours"]; BENCH_SERVICE_ACCOUNTS [1000];
BENCH_MIX ["small large unannotated"]: a subset sends only those
bodies (e.g. BENCH_MIX=large BENCH_RATES= for one kind at saturation only);
BENCH_SERVER_CPU [0]; BENCH_LOAD_CPU [1]; BENCH_NICE (e.g. -20: servers and load generators
run under `nice -n` in sessions of their own whose autogroup gets the same value, as in
benchmarks/run.sh, so that other work on a shared machine takes less of their cores);
BENCH_OUT (directory for results.md and results.json); UPSTREAM_WEBHOOK_BIN (else
tools/upstream/build.sh builds or reuses it); KUBEBUILDER_ASSETS (else tools/kube/build.sh).
Only 127.0.0.1 is used; every run is bounded in time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
FIXED_RATE = HERE.parent / "fixed_rate.py"
WRK_SCRIPT = HERE.parent / "mutate.lua"
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.cluster import Cluster, find_binaries  # noqa: E402
from tests.e2e.processes import _die_with_parent  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"


def _env_float(name: str, full: float, quick: float) -> float:
    return float(os.environ.get(name, quick if QUICK else full))


SAT_SECONDS = int(_env_float("BENCH_SAT_SECONDS", 10, 3))
SAT_RUNS = int(_env_float("BENCH_SAT_RUNS", 3, 1))
RATE_SECONDS = _env_float("BENCH_RATE_SECONDS", 10, 3)
WARMUP_SECONDS = int(_env_float("BENCH_WARMUP_SECONDS", 2, 1))
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "100 500 1000").split()]
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
TARGETS = os.environ.get("BENCH_TARGETS", "upstream ours").split()
SERVICE_ACCOUNTS = int(os.environ.get("BENCH_SERVICE_ACCOUNTS", "1000"))
SERVER_CPU = int(os.environ.get("BENCH_SERVER_CPU", "0"))
LOAD_CPU = int(os.environ.get("BENCH_LOAD_CPU", "1"))
PY = os.environ.get("BENCH_PYTHON", str(REPO / ".venv" / "bin" / "python"))
NICE = os.environ.get("BENCH_NICE", "")
MIX = os.environ.get("BENCH_MIX", "small large unannotated").split()
NAMESPACE = "bench"
ROLE = "arn:aws:iam::111122223333:role/bench"
FLAGS = ("--aws-default-region=us-west-2",)
READY_TIMEOUT = 60.0


def niced(argv: list[str]) -> list[str]:
    return ["setsid", "nice", "-n", NICE, *argv] if NICE else argv


def boost(pid: int) -> None:
    """With the kernel's autogroup scheduling, nice only counts inside a session: give the
    process's own session (setsid) the same nice value."""
    if not NICE:
        return
    ours = Path("/proc/self/autogroup").read_text().split()[0]
    for _ in range(100):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/autogroup").read_text().split()[0] != ours:
                Path(f"/proc/{pid}/autogroup").write_text(NICE)
                return
        time.sleep(0.02)
    note(f"process {pid} is still in this script's autogroup; nice not applied to it")


def run_boosted(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    process = subprocess.Popen(niced(argv), **kwargs)
    boost(process.pid)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def note(message: str) -> None:
    print(f"benchmarks/upstream: {message}", file=sys.stderr, flush=True)


def die(message: str) -> NoReturn:
    note(f"error: {message}")
    raise SystemExit(1)


# --- the request mix ------------------------------------------------------------------------


def review(uid: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "dryRun": False,
        },
    }


def small_pod(service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-api-7d9f8b6c5d-",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "orders-api", "pod-template-hash": "7d9f8b6c5d"},
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {
                    "name": "api",
                    "image": "registry.invalid/orders-api:2.14.1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


def large_pod() -> dict[str, Any]:
    containers = [
        {
            "name": f"c{i}",
            "image": f"registry.invalid/component-{i}:1.{i}.0",
            "command": ["/bin/component"],
            "args": ["--listen=:8080", f"--shard={i}", "--log-level=info"],
            "ports": [
                {"name": "http", "containerPort": 8080 + i, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090 + i, "protocol": "TCP"},
            ],
            "env": [{"name": f"SETTING_{j}", "value": f"value-{i}-{j}"} for j in range(6)]
            + [
                {
                    "name": "POD_NAME",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                }
            ],
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/component", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": 8080 + i},
                "periodSeconds": 5,
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": 8080 + i},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            "securityContext": {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "imagePullPolicy": "IfNotPresent",
        }
        for i in range(10)
    ]
    pod = small_pod("bench-annotated")
    pod["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
    }
    pod["spec"]["containers"] = containers
    pod["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "component-config"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    return pod


def write_bodies(directory: Path) -> dict[str, Path]:
    bodies = {
        "small": review("5f0c4f3e-0000-4000-8000-000000000001", small_pod("bench-annotated")),
        "large": review("5f0c4f3e-0000-4000-8000-000000000002", large_pod()),
        "unannotated": review("5f0c4f3e-0000-4000-8000-000000000003", small_pod("bench-plain")),
    }
    unknown = set(MIX) - set(bodies)
    if unknown or not MIX:
        die(f"BENCH_MIX must name some of {sorted(bodies)}, not {sorted(unknown)}")
    paths = {}
    for name, body in bodies.items():
        if name not in MIX:
            continue
        path = directory / f"{name}.json"
        path.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
        paths[name] = path
    return paths


# --- measurement helpers --------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def core_busy_ticks(cpu: int) -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values) - values[3] - values[4]  # minus idle and iowait
    return 0


def kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def post(port: int, body: bytes, context: ssl.SSLContext, timeout: float = 2.0) -> dict[str, Any]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
    answer: dict[str, Any] = json.loads(data)
    return answer


WRK_LINES = {
    "requests_per_s": re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE),
    "requests": re.compile(r"^requests: (\d+)", re.MULTILINE),
    "non_200": re.compile(r"^non-200 responses: (\d+)", re.MULTILINE),
}


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, pattern in WRK_LINES.items():
        match = pattern.search(text)
        if match is None:
            die(f"cannot read {key} from wrk's output:\n{text}")
        out[key] = float(match.group(1))
    errors = re.search(
        r"^socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text, re.MULTILINE
    )
    out["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return out


# --- one server -----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    metrics_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        argv = _die_with_parent(niced(["taskset", "-c", str(SERVER_CPU), *self.argv]))
        with self.log.open("wb") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        boost(self.process.pid)

    @property
    def pid(self) -> int:
        if self.process is None:
            die(f"{self.name} is not running")
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


@dataclass
class Result:
    name: str
    startup_s: float = 0.0
    saturation_rps: list[float] = field(default_factory=list)
    cpu_us_per_admission: list[float] = field(default_factory=list)
    server_core_share: list[float] = field(default_factory=list)
    foreign_core_share: list[float] = field(default_factory=list)
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss_idle_kib: int = 0
    rss_after_kib: int = 0
    rss_peak_kib: int = 0


def wait_first_mutation(server: Server, body: bytes, context: ssl.SSLContext) -> float:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process is None or server.process.poll() is not None:
            die(f"{server.name} exited during start-up; see {server.log}")
        with contextlib.suppress(OSError, RuntimeError, ValueError, http.client.HTTPException):
            if "patch" in post(server.port, body, context, timeout=0.5).get("response", {}):
                return time.monotonic() - server.started
        time.sleep(0.005)
    die(f"{server.name} did not mutate within {READY_TIMEOUT} s; see {server.log}")


def probe_body() -> bytes:
    """A review that must come back mutated: the small Pod, whatever BENCH_MIX says."""
    return json.dumps(
        review("5f0c4f3e-0000-4000-8000-000000000000", small_pod("bench-annotated"))
    ).encode()


def check_mix(server: Server, bodies: dict[str, Path], context: ssl.SSLContext) -> None:
    for name, path in bodies.items():
        response = post(server.port, path.read_bytes(), context)["response"]
        mutated = "patch" in response
        if response.get("allowed") is not True or mutated != (name != "unannotated"):
            die(f"{server.name}: unexpected answer to the {name} Pod: {str(response)[:300]}")


def run_wrk(server: Server, bodies: str, seconds: int, work: Path, tag: str) -> dict[str, Any]:
    out = work / f"{tag}.wrk"
    ticks0, busy0 = cpu_ticks(server.pid), core_busy_ticks(SERVER_CPU)
    argv = [
        "timeout", str(seconds + 30), "taskset", "-c", str(LOAD_CPU), "wrk", "-t1",
        f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(WRK_SCRIPT),
        f"https://127.0.0.1:{server.port}/mutate",
    ]  # fmt: skip
    with out.open("wb") as handle:
        status = run_boosted(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "BENCH_BODIES": bodies},
        ).returncode
    text = out.read_text()
    if status != 0:
        die(f"wrk failed ({status}):\n{text}")
    result = parse_wrk(text)
    if result["non_200"] or result["socket_errors"]:
        die(f"{server.name}: wrk saw errors or non-200 answers:\n{text}")
    hz = os.sysconf("SC_CLK_TCK")
    used = cpu_ticks(server.pid) - ticks0
    busy = core_busy_ticks(SERVER_CPU) - busy0
    result["cpu_s"] = used / hz
    result["server_core_share"] = used / hz / seconds
    result["foreign_core_share"] = max(0, busy - used) / hz / seconds
    return result


def run_rate(
    server: Server, bodies: dict[str, Path], rate: float, work: Path, tag: str
) -> dict[str, Any]:
    argv = [
        "timeout", str(int(RATE_SECONDS) + 60), "taskset", "-c", str(LOAD_CPU), PY,
        str(FIXED_RATE), "--port", str(server.port), "--server-name", "localhost",
        "--cafile", str(work / "pki" / "webhook-ca.crt"), "--rate", str(rate),
        "--duration", str(RATE_SECONDS), "--warmup", "1", "--connections", str(CONNECTIONS),
        "--no-check-rate", "--server-pid", str(server.pid),
        *(arg for path in bodies.values() for arg in ("--body", str(path))),
    ]  # fmt: skip
    ticks0, busy0, started = cpu_ticks(server.pid), core_busy_ticks(SERVER_CPU), time.monotonic()
    done = run_boosted(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - started
    foreign = core_busy_ticks(SERVER_CPU) - busy0 - (cpu_ticks(server.pid) - ticks0)
    (work / f"{tag}.json").write_bytes(done.stdout)
    if done.returncode != 0:
        die(f"{server.name}: fixed rate {rate}/s failed: {done.stderr.decode()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["foreign_core_share"] = max(0, foreign) / os.sysconf("SC_CLK_TCK") / elapsed
    return result


def bench(
    server: Server,
    bodies: dict[str, Path],
    context: ssl.SSLContext,
    work: Path,
    env: dict[str, str],
    round_: int,
) -> Result:
    result = Result(server.name)
    note(f"== {server.name} (round {round_}): starting")
    server.start(env)
    try:
        probe = probe_body()
        result.startup_s = wait_first_mutation(server, probe, context)
        note(f"{server.name}: first mutated answer {result.startup_s:.3f} s after start")
        check_mix(server, bodies, context)
        time.sleep(0.5)
        result.rss_idle_kib = kib(server.pid, "VmRSS")
        mix = ":".join(str(p) for p in bodies.values())
        run_wrk(server, mix, WARMUP_SECONDS, work, f"{server.name}.r{round_}.warmup")
        for i in range(SAT_RUNS):
            wrk = run_wrk(server, mix, SAT_SECONDS, work, f"{server.name}.r{round_}.sat{i}")
            result.saturation_rps.append(wrk["requests_per_s"])
            result.cpu_us_per_admission.append(1e6 * wrk["cpu_s"] / wrk["requests"])
            result.server_core_share.append(wrk["server_core_share"])
            result.foreign_core_share.append(wrk["foreign_core_share"])
            note(
                f"{server.name}: saturation {wrk['requests_per_s']:.0f}/s, "
                f"{result.cpu_us_per_admission[-1]:.0f} us CPU/admission, server core "
                f"{100 * wrk['server_core_share']:.0f}% "
                f"(other work {100 * wrk['foreign_core_share']:.0f}%)"
            )
        for rate in RATES:
            fixed = run_rate(server, bodies, rate, work, f"{server.name}.r{round_}.rate{rate:g}")
            result.rates[f"{rate:g}"] = fixed
            lat = fixed["latency_ms"]
            note(
                f"{server.name}: {rate:g}/s: p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
                f"p99.9 {lat['p99.9']} ms (achieved {fixed['achieved_rate']}/s; other work on "
                f"the server's core {100 * fixed['foreign_core_share']:.0f}%)"
            )
        result.rss_after_kib = kib(server.pid, "VmRSS")
        result.rss_peak_kib = kib(server.pid, "VmHWM")
    finally:
        server.stop()
    return result


# --- report ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


QUIET = 0.05  # other work on the server's core below which a saturation run counts as quiet


def merge(results: list[Result]) -> dict[str, Any]:
    """Medians over rounds (and over saturation runs). When some saturation runs were quiet
    (other work on the server's core below 5 %), only those count: on a shared machine the
    others measure the neighbours as much as the server."""
    runs = [
        (rps, cpu, share, foreign)
        for r in results
        for rps, cpu, share, foreign in zip(
            r.saturation_rps,
            r.cpu_us_per_admission,
            r.server_core_share,
            r.foreign_core_share,
            strict=True,
        )
    ]
    quiet = [run for run in runs if run[3] < QUIET]
    kept = quiet or runs
    out: dict[str, Any] = {
        "startup_s": _median([r.startup_s for r in results]),
        "saturation_rps": _median([run[0] for run in kept]),
        "saturation_runs": [round(run[0]) for run in runs],
        "saturation_quiet_runs": len(quiet),
        "cpu_us_per_admission": _median([run[1] for run in kept]),
        "server_core_share": _median([run[2] for run in kept]),
        "foreign_core_share": max((run[3] for run in kept), default=0.0),
        "rss_idle_mib": _median([r.rss_idle_kib / 1024 for r in results]),
        "rss_after_mib": _median([r.rss_after_kib / 1024 for r in results]),
        "rss_peak_mib": _median([r.rss_peak_kib / 1024 for r in results]),
        "rates": {},
    }
    for rate in {k for r in results for k in r.rates}:
        entries = [r.rates[rate] for r in results if rate in r.rates]
        out["rates"][rate] = {
            q: _median([e["latency_ms"][q] for e in entries]) for q in ("p50", "p99", "p99.9")
        } | {
            "achieved": _median([e["achieved_rate"] for e in entries]),
            "foreign_core_share": max(e["foreign_core_share"] for e in entries),
        }
    return out


def render(merged: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    up, ours = merged.get("upstream"), merged.get("ours")
    names = [n for n in ("upstream", "ours") if n in merged]

    def ratio(key: str, *, rate: str | None = None, q: str | None = None) -> str:
        if up is None or ours is None:
            return ""
        a = ours["rates"][rate][q] if rate and q else ours[key]
        b = up["rates"][rate][q] if rate and q else up[key]
        return f"{a / b:.2f}" if b else ""

    def cell(name: str, key: str, fmt: str) -> str:
        return format(merged[name][key], fmt)

    header = "| metric | " + " | ".join(names) + (" | ours/upstream |" if len(names) == 2 else " |")
    lines = [header, "|---" * (len(names) + 1 + (len(names) == 2)) + "|"]

    def row(label: str, values: list[str], r: str) -> None:
        lines.append(
            f"| {label} | " + " | ".join(values) + (f" | {r} |" if len(names) == 2 else " |")
        )

    row(
        "admissions/s at saturation (1 core; median)",
        [cell(n, "saturation_rps", ".0f") for n in names],
        ratio("saturation_rps"),
    )
    row(
        "CPU time per admission (µs)",
        [cell(n, "cpu_us_per_admission", ".0f") for n in names],
        ratio("cpu_us_per_admission"),
    )
    for rate in sorted({k for n in names for k in merged[n]["rates"]}, key=float):
        for q in ("p50", "p99", "p99.9"):
            row(
                f"{q} at {rate}/s (ms)",
                [format(merged[n]["rates"][rate][q], ".2f") for n in names],
                ratio("", rate=rate, q=q),
            )
    row(
        "start-up to first mutated answer (s)",
        [cell(n, "startup_s", ".3f") for n in names],
        ratio("startup_s"),
    )
    row(
        "RSS idle after start-up (MiB)",
        [cell(n, "rss_idle_mib", ".1f") for n in names],
        ratio("rss_idle_mib"),
    )
    row(
        "RSS after the load (MiB)",
        [cell(n, "rss_after_mib", ".1f") for n in names],
        ratio("rss_after_mib"),
    )
    row("peak RSS (MiB)", [cell(n, "rss_peak_mib", ".1f") for n in names], ratio("rss_peak_mib"))
    text = "\n".join(lines)
    notes = [
        "",
        (
            "Saturation runs (admissions/s): "
            + "; ".join(
                f"{n} {merged[n]['saturation_runs']} ({merged[n]['saturation_quiet_runs']} quiet)"
                for n in names
            )
            + "; the medians use the quiet runs (other work on the server's core below "
            + f"{100 * QUIET:.0f}%) when there are any"
        ),
        (
            "Other work on the server's core (worst run counted): saturation "
            + "; ".join(f"{n} {100 * merged[n]['foreign_core_share']:.0f}%" for n in names)
            + "; fixed rates "
            + "; ".join(
                f"{n} "
                + ", ".join(
                    f"{rate}/s {100 * v['foreign_core_share']:.0f}%"
                    for rate, v in sorted(merged[n]["rates"].items(), key=lambda kv: float(kv[0]))
                )
                for n in names
            )
        ),
        (
            f"{meta['date']}, {meta['cpu']}, load average {meta['loadavg_before']} before / "
            f"{meta['loadavg_after']} after; {meta['command']}"
        ),
    ]
    if up is not None and ours is not None:
        throughput = ours["saturation_rps"] / up["saturation_rps"]
        goals = [f"throughput per core ours/upstream {throughput:.2f} (goal >= 1)"]
        for rate in sorted(ours["rates"], key=float):
            if rate in up["rates"]:
                delta = ours["rates"][rate]["p99"] - up["rates"][rate]["p99"]
                goals.append(f"p99 at {rate}/s ours - upstream {delta:+.2f} ms (goal <= +1)")
        notes.append("Goals: " + "; ".join(goals))
    return text + "\n".join(notes) + "\n"


# --- main -----------------------------------------------------------------------------------


def upstream_binary() -> Path:
    done = subprocess.run(
        [str(REPO / "tools" / "upstream" / "build.sh")], stdout=subprocess.PIPE, check=False
    )
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        die("tools/upstream/build.sh failed (set UPSTREAM_WEBHOOK_BIN to use an existing binary)")
    return Path(lines[-1])


def populate(cluster: Cluster) -> None:
    admin = cluster.admin
    namespaces = [NAMESPACE, *(f"bench-{i}" for i in range(9))]
    for namespace in namespaces:
        admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "bench-annotated",
                "namespace": NAMESPACE,
                "annotations": {
                    "eks.amazonaws.com/role-arn": ROLE,
                    "eks.amazonaws.com/sts-regional-endpoints": "true",
                    "eks.amazonaws.com/token-expiration": "3600",
                },
            },
        }
    )
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "bench-plain", "namespace": NAMESPACE},
        }
    )
    for i in range(max(0, SERVICE_ACCOUNTS - 2)):
        metadata: dict[str, Any] = {"name": f"sa-{i}", "namespace": namespaces[i % len(namespaces)]}
        if i % 10 == 0:
            metadata["annotations"] = {"eks.amazonaws.com/role-arn": f"{ROLE}-{i}"}
        admin.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})


def check_machine() -> None:
    for tool in ("wrk", "taskset", "timeout"):
        if shutil.which(tool) is None:
            die(f"{tool} is missing (apt-get install -y wrk util-linux coreutils)")
    cores = os.cpu_count() or 1
    if SERVER_CPU == LOAD_CPU or max(SERVER_CPU, LOAD_CPU) >= cores:
        die(f"need two different CPUs (server {SERVER_CPU}, load {LOAD_CPU}, {cores} cores)")


def describe(upstream: Path | None) -> dict[str, Any]:
    """When, where and how the run was made, for the report's header."""
    command = (
        " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_"))
        + (" " if any(k.startswith("BENCH_") for k in os.environ) else "")
        + ".venv/bin/python benchmarks/upstream/run.py"
    )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[0],
        "command": command,
        "upstream": str(upstream),
    }


def server_argv(name: str, upstream: Path | None, flags: list[str]) -> list[str]:
    if name == "upstream":
        if upstream is None:
            die("no upstream binary")
        return [str(upstream), *flags, "--logtostderr"]
    if name == "ours":
        return [PY, "-m", "webhook", *flags]
    die(f"unknown target {name}")


def run_rounds(
    cluster: Cluster, upstream: Path | None, env: dict[str, str], work: Path
) -> dict[str, list[Result]]:
    """Every target, ROUNDS times, each server fresh, against the started cluster."""
    results: dict[str, list[Result]] = {name: [] for name in TARGETS}
    for process in cluster.processes:  # keep the server's core for the server
        os.sched_setaffinity(process.pid, {LOAD_CPU})
    populate(cluster)
    bodies = write_bodies(work)
    context = ssl.create_default_context(cafile=str(cluster.webhook_ca.cert_path))
    common = [
        "--in-cluster=false",
        f"--kubeconfig={cluster.webhook_kubeconfig}",
        f"--tls-cert={cluster.webhook_cert.cert_path}",
        f"--tls-key={cluster.webhook_cert.key_path}",
        *FLAGS,
    ]
    for round_ in range(1, ROUNDS + 1):
        for name in TARGETS:
            port, metrics_port = free_port(), free_port()
            ports = [f"--port={port}", f"--metrics-port={metrics_port}"]
            argv = server_argv(name, upstream, [*common, *ports])
            server = Server(name, argv, port, metrics_port, work / f"{name}.r{round_}.log")
            results[name].append(bench(server, bodies, context, work, env, round_))
    return results


def save(results: dict[str, list[Result]], meta: dict[str, Any], work: Path) -> None:
    merged = {name: merge(rs) for name, rs in results.items() if rs}
    text = render(merged, meta)
    print()
    print(text)
    out = Path(os.environ.get("BENCH_OUT", str(work)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "merged": merged,
                "runs": {n: [r.__dict__ for r in rs] for n, rs in results.items()},
            },
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    note(f"results in {out}")


def main() -> int:
    check_machine()
    upstream = upstream_binary() if "upstream" in TARGETS else None
    work = Path(tempfile.mkdtemp(prefix="upstream-bench."))
    binaries = find_binaries(work / "kube-build.log")
    if isinstance(binaries, str):
        die(binaries)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "PYTHONPATH")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    os.environ.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    cluster = Cluster(binaries, work, env=env)
    meta = describe(upstream)
    try:
        note(f"starting etcd and kube-apiserver in {work}")
        cluster.start()
        results = run_rounds(cluster, upstream, env, work)
    finally:
        cluster.close()
    meta["loadavg_after"] = Path("/proc/loadavg").read_text().split()[0]
    save(results, meta, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
