#!/usr/bin/env python3
"""Side-by-side benchmark of upstream's Go webhook and ours, in one run on this machine.

    .venv/bin/python benchmarks/upstream/run.py              # full run (about 3 minutes)
    BENCH_QUICK=1 .venv/bin/python benchmarks/upstream/run.py  # about 40 s (CI smoke)

Both servers get the same set-up: the same serving certificate (TLS 1.2+, keep-alive), the same
kubeconfig and RBAC identity against the same real kube-apiserver + etcd (tests/e2e/cluster.py),
so the same ServiceAccount cache ($BENCH_SERVICE_ACCOUNTS ServiceAccounts, one in ten
annotated), the same flags (`--aws-default-region=us-west-2`), each pinned to CPU
$BENCH_SERVER_CPU with taskset. The load generators run on CPU $BENCH_LOAD_CPU (kube-apiserver
and etcd are moved there too, so the server's core only runs the server).

Each round starts every target (one at a time) and keeps them all running; then each
measurement is made on each server in turn, seconds apart, in an order reversed from one
measurement to the next. The table gives, besides the ratio of the medians, the median (and
range) of the ratios of runs made seconds apart: on a VM whose speed drifts over minutes those
hold where medians of runs minutes apart do not.

The request classes (../pods.py), each measured on its own and as a mix: `small` (one
container, annotated ServiceAccount: the common admission), `large` (ten containers with
variables, ports, probes, resources and mounts), `unannotated` (the small Pod, no role: no
patch), `distinct` (1,024 small Pods that all differ, sent in a cycle: none is ever decided
from our decision memo, whereas the classes above repeat one Pod as a Deployment's replicas
do), and `mix` (equal interleaved shares of the classes in $BENCH_MIX).

Measured per server and class: admissions/s at saturation (wrk, closed loop,
$BENCH_CONNECTIONS connections, median of $BENCH_SAT_RUNS runs; the server has one core, so this
is also throughput per core) and CPU time per admission (utime + stime of the server from /proc
over the saturation runs); per server: p50/p99/p99.9 latency at fixed rates for the classes in
$BENCH_RATE_CLASSES (open loop, no coordinated omission: ../fixed_rate.py), start-up (process
start to the first mutated answer; upstream has no readiness endpoint, so the same definition is
used for both) and RSS (idle after start-up, after the load, peak). Prints Markdown tables with
ours/upstream ratios, the class whose ratio is worst for us first, and how busy the server's
core was with other work during each run (the machine may be shared).

Environment (defaults in brackets): BENCH_QUICK=1; BENCH_SAT_SECONDS [10, quick 3];
BENCH_SAT_RUNS [3, quick 1]; BENCH_RATE_SECONDS [10, quick 3]; BENCH_RATES ["100 500 1000"];
BENCH_WARMUP_SECONDS [2, quick 1]; BENCH_CONNECTIONS [16]; BENCH_ROUNDS [1, servers interleaved,
medians reported]; BENCH_TARGETS ["upstream ours"], where `ours@DIR` is another checkout's
webhook/ (PYTHONPATH=DIR, same venv), to compare versions in one run; BENCH_SERVICE_ACCOUNTS
[1000];
BENCH_CLASSES ["small large unannotated distinct mix"]: the classes measured at
saturation; BENCH_RATE_CLASSES ["small mix"]: the classes measured at fixed rates; BENCH_MIX
["small large unannotated"]: what the mix is made of;
BENCH_RETRIES [2]: a saturation or fixed-rate run during which other work took 5 % or more of
the server's core is measured again, up to this many times, and the quietest attempt counts;
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
import functools
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
FIXED_RATE = HERE.parent / "fixed_rate.py"
WRK_SCRIPT = HERE.parent / "mutate.lua"
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(HERE.parent))

from pods import (  # noqa: E402
    ANNOTATED,
    CLASSES,
    NAMESPACE,
    PLAIN,
    ROLE,
    ROLE_ANNOTATIONS,
    distinct_reviews,
    review,
    reviews,
    small_pod,
)

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
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "100 500 1000").split() if r != "none"]
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
TARGETS = os.environ.get("BENCH_TARGETS", "upstream ours").split()
SERVICE_ACCOUNTS = int(os.environ.get("BENCH_SERVICE_ACCOUNTS", "1000"))
SERVER_CPU = int(os.environ.get("BENCH_SERVER_CPU", "0"))
LOAD_CPU = int(os.environ.get("BENCH_LOAD_CPU", "1"))
PY = os.environ.get("BENCH_PYTHON", str(REPO / ".venv" / "bin" / "python"))
NICE = os.environ.get("BENCH_NICE", "")
MIX = os.environ.get("BENCH_MIX", " ".join(CLASSES)).split()
SAT_CLASSES = os.environ.get("BENCH_CLASSES", " ".join((*CLASSES, "distinct", "mix"))).split()
RATE_CLASSES = os.environ.get("BENCH_RATE_CLASSES", "small mix").split()
RETRIES = max(0, int(os.environ.get("BENCH_RETRIES", "2")))
QUIET = 0.05  # other work on the server's core below which a run counts as quiet
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


def write_bodies(directory: Path) -> dict[str, Path]:
    """One compact review per class, in files for wrk and fixed_rate.py."""
    classes = {*CLASSES, "distinct", "mix"}
    unknown = (set(MIX) - set(CLASSES)) | (set(SAT_CLASSES) - classes)
    unknown |= set(RATE_CLASSES) - classes
    if unknown or not MIX:
        die(
            f"BENCH_MIX must name some of {list(CLASSES)}, BENCH_CLASSES and BENCH_RATE_CLASSES "
            f"some of {[*CLASSES, 'distinct', 'mix']}; unknown: {sorted(unknown)}"
        )
    paths = {}
    named = [*reviews().items(), *((f"distinct/{i}", r) for i, r in enumerate(distinct_reviews()))]
    (directory / "distinct").mkdir()
    for name, body in named:
        path = directory / f"{name}.json"
        path.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
        paths[name] = path
    return paths


def class_bodies(paths: dict[str, Path], name: str) -> dict[str, Path]:
    """The bodies one class sends: its own, the distinct Pods, or the mix's."""
    if name == "distinct":
        return {n: path for n, path in paths.items() if n.startswith("distinct/")}
    return {n: paths[n] for n in MIX} if name == "mix" else {name: paths[name]}


# --- measurement helpers --------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def core_ticks(cpu: int) -> tuple[int, int]:
    """The core's busy ticks (all but idle and iowait) and, among them, the hypervisor's
    steal: time the VM's host gave the core to someone else."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values) - values[3] - values[4], values[7]
    return 0, 0


def pin_threads(pid: int, cpu: int) -> None:
    """Every thread of `pid` on `cpu`: sched_setaffinity moves one thread, and a Go process
    (etcd, kube-apiserver) has started several by the time it serves; the threads it starts
    later inherit the mask of the thread that starts them, so passes repeat until one finds
    no thread it had not pinned (one started meanwhile by a thread not yet pinned)."""
    pinned: set[int] = set()
    while fresh := {int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()} - pinned:
        for tid in fresh:
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(tid, {cpu})
        pinned |= fresh


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
            # In the work directory: `python -m` puts the current directory first on sys.path,
            # which would shadow an `ours@DIR` target's PYTHONPATH.
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.log.parent,
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
    saturation: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """class -> one entry per wrk run: rps, cpu_us, core_share, foreign_share."""
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`<class> <rate>` -> fixed_rate.py's result."""
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
    return json.dumps(review("5f0c4f3e-0000-4000-8000-000000000000", small_pod(ANNOTATED))).encode()


def check_mix(server: Server, bodies: dict[str, Path], context: ssl.SSLContext) -> None:
    for name, path in bodies.items():
        response = post(server.port, path.read_bytes(), context)["response"]
        mutated = "patch" in response
        if response.get("allowed") is not True or mutated != (name != "unannotated"):
            die(f"{server.name}: unexpected answer to the {name} Pod: {str(response)[:300]}")


def run_wrk(server: Server, bodies: str, seconds: int, work: Path, tag: str) -> dict[str, Any]:
    out = work / f"{tag}.wrk"
    ticks0, (busy0, steal0) = cpu_ticks(server.pid), core_ticks(SERVER_CPU)
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
    busy, steal = core_ticks(SERVER_CPU)
    result["cpu_s"] = used / hz
    result["server_core_share"] = used / hz / seconds
    result["foreign_core_share"] = max(0, busy - busy0 - used) / hz / seconds
    result["steal_share"] = (steal - steal0) / hz / seconds
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
    ticks0, (busy0, steal0), started = (
        cpu_ticks(server.pid),
        core_ticks(SERVER_CPU),
        time.monotonic(),
    )
    done = run_boosted(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - started
    busy, steal = core_ticks(SERVER_CPU)
    foreign = busy - busy0 - (cpu_ticks(server.pid) - ticks0)
    (work / f"{tag}.json").write_bytes(done.stdout)
    if done.returncode != 0:
        die(f"{server.name}: fixed rate {rate}/s failed: {done.stderr.decode()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["foreign_core_share"] = max(0, foreign) / os.sysconf("SC_CLK_TCK") / elapsed
    result["steal_share"] = (steal - steal0) / os.sysconf("SC_CLK_TCK") / elapsed
    return result


def quietest(measure: Callable[[str], dict[str, Any]], tag: str, what: str) -> dict[str, Any]:
    """`measure(tag)`, repeated (at most RETRIES more times, with the attempt in the tag) while
    other work took QUIET or more of the server's core: the quietest attempt counts, so a
    neighbour's burst costs a run's time rather than a figure."""
    attempts: list[dict[str, Any]] = []
    for attempt in range(RETRIES + 1):
        attempts.append(measure(f"{tag}.{attempt}" if attempt else tag))
        share = attempts[-1]["foreign_core_share"]
        if share < QUIET:
            break
        if attempt < RETRIES:
            note(
                f"{what}: other work took {share:.0%} of the server's core (hypervisor steal "
                f"{attempts[-1]['steal_share']:.0%}); measuring again"
            )
    best = min(attempts, key=lambda a: float(a["foreign_core_share"]))
    best["attempts"] = len(attempts)
    return best


def start(
    server: Server,
    bodies: dict[str, Path],
    context: ssl.SSLContext,
    work: Path,
    env: dict[str, str],
    round_: int,
) -> Result:
    """Start one server: its start-up time, its answers checked, idle RSS, a warm-up."""
    result = Result(server.name)
    note(f"== {server.name} (round {round_}): starting")
    server.start(env)
    result.startup_s = wait_first_mutation(server, probe_body(), context)
    note(f"{server.name}: first mutated answer {result.startup_s:.3f} s after start")
    check_mix(server, {n: bodies[n] for n in (*CLASSES, "distinct/0")}, context)
    time.sleep(0.5)
    result.rss_idle_kib = kib(server.pid, "VmRSS")
    warmup = ":".join(str(p) for p in class_bodies(bodies, "mix").values())
    run_wrk(server, warmup, WARMUP_SECONDS, work, f"{_tag(server, round_)}.warmup")
    return result


def _tag(server: Server, round_: int) -> str:
    return f"{server.name.replace('/', '_')}.r{round_}"


def saturate(
    server: Server, result: Result, bodies: dict[str, Path], work: Path, name: str, tag: str
) -> None:
    sent = ":".join(str(p) for p in class_bodies(bodies, name).values())
    wrk = quietest(
        functools.partial(run_wrk, server, sent, SAT_SECONDS, work),
        tag,
        f"{server.name} {name} saturation",
    )
    run = {
        "rps": wrk["requests_per_s"],
        "cpu_us": 1e6 * wrk["cpu_s"] / wrk["requests"],
        "core_share": wrk["server_core_share"],
        "foreign_share": wrk["foreign_core_share"],
        "attempts": wrk["attempts"],
    }
    result.saturation.setdefault(name, []).append(run)
    note(
        f"{server.name} {name}: saturation {wrk['requests_per_s']:.0f}/s, "
        f"{run['cpu_us']:.0f} us CPU/admission, server core "
        f"{100 * wrk['server_core_share']:.0f}% "
        f"(other work {100 * wrk['foreign_core_share']:.0f}%, hypervisor steal "
        f"{100 * wrk['steal_share']:.0f}%)"
    )


def fixed_rate(
    server: Server,
    result: Result,
    bodies: dict[str, Path],
    work: Path,
    name: str,
    rate: float,
    tag: str,
) -> None:
    fixed = quietest(
        functools.partial(run_rate, server, class_bodies(bodies, name), rate, work),
        tag,
        f"{server.name} {name} at {rate:g}/s",
    )
    result.rates[f"{name} {rate:g}"] = fixed
    lat = fixed["latency_ms"]
    note(
        f"{server.name} {name}: {rate:g}/s: p50 {lat['p50']} ms, p99 {lat['p99']} "
        f"ms, p99.9 {lat['p99.9']} ms (achieved {fixed['achieved_rate']}/s; other "
        f"work on the server's core {100 * fixed['foreign_core_share']:.0f}%, hypervisor "
        f"steal {100 * fixed['steal_share']:.0f}%)"
    )


def bench_round(
    servers: list[Server],
    bodies: dict[str, Path],
    context: ssl.SSLContext,
    work: Path,
    envs: dict[str, dict[str, str]],
    round_: int,
) -> list[Result]:
    """One round: every server started (one at a time, for its start-up figure) and kept
    running, then each measurement made on each server in turn, the order reversed from one
    to the next. This VM's speed drifts by a quarter over minutes; runs of the servers that
    follow each other seconds apart see the same machine, so their ratio holds where medians
    taken minutes apart do not."""
    results: list[Result] = []
    try:
        results.extend(
            start(server, bodies, context, work, envs[server.name], round_) for server in servers
        )
        steps = [
            (functools.partial(saturate, name=name), f"{name}.sat{i}")
            for name in SAT_CLASSES
            for i in range(SAT_RUNS)
        ]
        steps += [
            (functools.partial(fixed_rate, name=name, rate=rate), f"{name}.rate{rate:g}")
            for name in RATE_CLASSES
            for rate in RATES
        ]
        turn = list(zip(servers, results, strict=True))
        for step, (measure, what) in enumerate(steps):
            for server, result in turn if step % 2 == 0 else reversed(turn):
                measure(server, result, bodies, work, tag=f"{_tag(server, round_)}.{what}")
        for server, result in zip(servers, results, strict=True):
            result.rss_after_kib = kib(server.pid, "VmRSS")
            result.rss_peak_kib = kib(server.pid, "VmHWM")
    finally:
        for server in servers:
            try:
                server.stop()
            except (OSError, subprocess.SubprocessError) as exc:  # stop the others anyway
                note(f"{server.name}: could not stop it: {exc}")
    return results


# --- report ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def merge(results: list[Result]) -> dict[str, Any]:
    """Medians over rounds (and over saturation runs). When some runs of a class (or of a
    class at a rate) were quiet (other work on the server's core below 5 %), only those count:
    on a shared machine the others measure the neighbours as much as the server."""
    out: dict[str, Any] = {
        "startup_s": _median([r.startup_s for r in results]),
        "rss_idle_mib": _median([r.rss_idle_kib / 1024 for r in results]),
        "rss_after_mib": _median([r.rss_after_kib / 1024 for r in results]),
        "rss_peak_mib": _median([r.rss_peak_kib / 1024 for r in results]),
        "saturation": {},
        "rates": {},
    }
    for name in SAT_CLASSES:
        runs = [run for r in results for run in r.saturation.get(name, [])]
        quiet = [run for run in runs if run["foreign_share"] < QUIET]
        kept = quiet or runs
        out["saturation"][name] = {
            "rps": _median([run["rps"] for run in kept]),
            "cpu_us": _median([run["cpu_us"] for run in kept]),
            "runs": [round(run["rps"]) for run in runs],
            "quiet_runs": len(quiet),
            "extra_attempts": sum(run.get("attempts", 1) - 1 for run in runs),
            "foreign_share": max((run["foreign_share"] for run in kept), default=0.0),
        }
    for key in {k for r in results for k in r.rates}:
        measured = [r.rates[key] for r in results if key in r.rates]
        entries = [e for e in measured if e["foreign_core_share"] < QUIET] or measured
        out["rates"][key] = {
            q: _median([e["latency_ms"][q] for e in entries]) for q in ("p50", "p99", "p99.9")
        } | {
            "achieved": _median([e["achieved_rate"] for e in entries]),
            "foreign_share": max(e["foreign_core_share"] for e in entries),
            "quiet_rounds": sum(e["foreign_core_share"] < QUIET for e in measured),
            "extra_attempts": sum(e.get("attempts", 1) - 1 for e in measured),
            "rounds": len(measured),
        }
    return out


def paired(results: dict[str, list[Result]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per target other than upstream and per class, the ratios to upstream of runs made
    seconds apart (the same round and run number): their median, lowest, highest and count.
    Pairs with both runs quiet count when there are any."""
    ups = results.get("upstream") or []
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, rounds in results.items():
        if name == "upstream" or not rounds or not ups:
            continue
        for cls in SAT_CLASSES:
            pairs = [
                (ours, theirs)
                for mine, up in zip(rounds, ups, strict=False)
                for ours, theirs in zip(
                    mine.saturation.get(cls, []), up.saturation.get(cls, []), strict=False
                )
            ]
            quiet = [pair for pair in pairs if max(run["foreign_share"] for run in pair) < QUIET]
            ratios = sorted(ours["rps"] / theirs["rps"] for ours, theirs in quiet or pairs)
            out.setdefault(name, {})[cls] = {
                "median": _median(ratios),
                "low": ratios[0] if ratios else float("nan"),
                "high": ratios[-1] if ratios else float("nan"),
                "pairs": len(ratios),
            }
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ""


def _label(name: str) -> str:
    return "ours" if name == "ours" else name


def _class_table(
    merged: dict[str, dict[str, Any]], names: list[str], compared: list[str]
) -> tuple[list[str], list[str]]:
    """The saturation table, one row per class, the worst throughput ratio for us first; and
    the classes in that order."""
    up = merged.get("upstream")

    def throughput_ratio(name: str) -> float:
        if up is None or not compared:
            return 0.0
        return float(merged[compared[0]]["paired"][name]["median"])

    def pairs(name: str) -> list[str]:
        if up is None:
            return []
        return [
            "{median:.2f} ({low:.2f}-{high:.2f}, {pairs} pairs)".format(**merged[n]["paired"][name])
            for n in compared
        ]

    def ratios(key: str, name: str) -> list[str]:
        if up is None:
            return []
        return [
            _ratio(merged[n]["saturation"][name][key], up["saturation"][name][key])
            for n in compared
        ]

    classes = sorted(SAT_CLASSES, key=throughput_ratio) if compared else list(SAT_CLASSES)
    columns = [f"{_label(n)} admissions/s" for n in names]
    columns += [f"{_label(n)}/upstream" for n in compared]
    columns += [f"{_label(n)}/upstream, paired runs (range)" for n in compared]
    columns += [f"{_label(n)} CPU µs/admission" for n in names]
    columns += [f"{_label(n)}/upstream" for n in compared]
    lines = ["| class | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in classes:
        cells = [f"{merged[n]['saturation'][name]['rps']:.0f}" for n in names]
        cells += ratios("rps", name)
        cells += pairs(name)
        cells += [f"{merged[n]['saturation'][name]['cpu_us']:.0f}" for n in names]
        cells += ratios("cpu_us", name)
        shown = f"mix ({'+'.join(MIX)})" if name == "mix" else name
        lines.append(f"| {shown} | " + " | ".join(cells) + " |")
    return lines, classes


def render(merged: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """The per-class saturation table (the worst ratio for us first), latencies, start-up and
    memory, and the conditions. Each of our targets gets a ratio to upstream's figure."""
    names = [n for n in TARGETS if n in merged]
    up = merged.get("upstream")
    compared = [n for n in names if n != "upstream"] if up is not None else []
    label = _label
    lines, classes = _class_table(merged, names, compared)
    columns = [label(n) for n in names] + [f"{label(n)}/upstream" for n in compared]
    lines += ["", "| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]

    def row(text: str, values: dict[str, float], fmt: str) -> None:
        cells = [format(values[n], fmt) for n in names]
        if up is not None:
            cells += [_ratio(values[n], values["upstream"]) for n in compared]
        lines.append(f"| {text} | " + " | ".join(cells) + " |")

    keys = sorted(
        {k for n in names for k in merged[n]["rates"]},
        key=lambda k: (RATE_CLASSES.index(k.split()[0]), float(k.split()[1])),
    )
    for key in keys:
        name, rate = key.split()
        for q in ("p50", "p99", "p99.9"):
            values = {n: merged[n]["rates"][key][q] for n in names}
            row(f"{name}: {q} at {rate}/s (ms)", values, ".2f")
    row("start-up to first mutated answer (s)", {n: merged[n]["startup_s"] for n in names}, ".3f")
    row("RSS idle after start-up (MiB)", {n: merged[n]["rss_idle_mib"] for n in names}, ".1f")
    row("RSS after the load (MiB)", {n: merged[n]["rss_after_mib"] for n in names}, ".1f")
    row("peak RSS (MiB)", {n: merged[n]["rss_peak_mib"] for n in names}, ".1f")
    runs = "; ".join(
        f"{label(n)} {name} {merged[n]['saturation'][name]['runs']} "
        f"({merged[n]['saturation'][name]['quiet_runs']} quiet, "
        f"{merged[n]['saturation'][name]['extra_attempts']} noisy attempts measured again)"
        for name in classes
        for n in names
    )
    foreign_sat = "; ".join(
        f"{label(n)} {max(merged[n]['saturation'][c]['foreign_share'] for c in classes):.0%}"
        for n in names
    )
    foreign_rates = "; ".join(
        f"{label(n)} "
        + ", ".join(
            f"{k}/s {merged[n]['rates'][k]['foreign_share']:.0%} "
            f"({merged[n]['rates'][k]['quiet_rounds']} of {merged[n]['rates'][k]['rounds']} "
            f"rounds quiet, {merged[n]['rates'][k]['extra_attempts']} noisy attempts measured "
            "again)"
            for k in keys
        )
        for n in names
    )
    notes = [
        "",
        (
            f"Saturation runs (admissions/s): {runs}; the medians use the quiet runs (other "
            f"work on the server's core below {QUIET:.0%}) when there are any. Paired runs: "
            "the same run of the same round, made seconds apart on the same core."
        ),
        (
            f"Other work on the server's core (worst run counted): saturation {foreign_sat}; "
            f"fixed rates {foreign_rates}. A noisy run is measured again up to {RETRIES} "
            "times (the quietest attempt counts); the latency medians use the quiet rounds "
            "when there are any."
        ),
        (
            f"{meta['date']}, {meta['cpu']}, load average {meta['loadavg_before']} before / "
            f"{meta['loadavg_after']} after; {meta['command']}"
        ),
    ]
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


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
                "name": ANNOTATED,
                "namespace": NAMESPACE,
                "annotations": ROLE_ANNOTATIONS,
            },
        }
    )
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": PLAIN, "namespace": NAMESPACE},
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
    if name == "ours" or name.startswith("ours@"):
        return [PY, "-m", "webhook", *flags]
    die(f"unknown target {name}")


def run_rounds(
    cluster: Cluster, upstream: Path | None, env: dict[str, str], work: Path
) -> dict[str, list[Result]]:
    """Every target, ROUNDS times, each server fresh, against the started cluster."""
    results: dict[str, list[Result]] = {name: [] for name in TARGETS}
    for process in cluster.processes:  # keep the server's core for the server
        pin_threads(process.pid, LOAD_CPU)
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
    envs = {
        name: {**env, "PYTHONPATH": name.partition("@")[2]} if "@" in name else env
        for name in TARGETS
    }
    for round_ in range(1, ROUNDS + 1):
        servers = []
        # Who starts first alternates too: the second server starts beside a running one.
        for name in TARGETS if round_ % 2 else reversed(TARGETS):
            port, metrics_port = free_port(), free_port()
            ports = [f"--port={port}", f"--metrics-port={metrics_port}"]
            argv = server_argv(name, upstream, [*common, *ports])
            log = work / f"{name.replace('/', '_')}.r{round_}.log"
            servers.append(Server(name, argv, port, metrics_port, log))
        for result in bench_round(servers, bodies, context, work, envs, round_):
            results[result.name].append(result)
    return results


def save(results: dict[str, list[Result]], meta: dict[str, Any], work: Path) -> None:
    merged = {name: merge(rs) for name, rs in results.items() if rs}
    for name, ratios in paired(results).items():
        merged[name]["paired"] = ratios
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
