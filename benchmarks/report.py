#!/usr/bin/env python3
"""Helpers for benchmarks/run.sh: parse wrk output, check the webhook's log and metrics, and
render the Markdown report. Standard library only.

    report.py wrk FILE                 -> JSON summary of one wrk run (with mutate.lua)
    report.py log FILE                 -> JSON counts of the webhook's admission log lines
    report.py metrics FILE             -> JSON: /mutate request counts by status code
    report.py saturation WRK_FILE...   -> JSON: median/min/max of several wrk runs
    report.py target NAME ...          -> JSON record of one server (see target_record)
    report.py render RESULTS.jsonl     -> Markdown tables and the target checks
    report.py targets-met RESULTS.jsonl -> exit 0 when the webhook met its targets
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

TARGET_THROUGHPUT = 5000.0  # admissions/s at saturation, one process on one core
TARGET_RATIO = 0.40  # of the bare aiohttp handler on the same harness
TARGET_P99_RATE = 500  # requests/s
TARGET_P99_MS = 2.0
CONTENDED_CPU_PCT = 90  # the server's share of its core below which saturation is suspect

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    def number(pattern: str) -> float | None:
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else None

    result: dict[str, Any] = {
        "requests_per_s": number(r"^Requests/sec:\s+([\d.]+)"),
        "requests": number(r"^requests: (\d+)"),
        "non_200": number(r"^non-200 responses: (\d+)"),
        # wrk prints this line only when there were some
        "non_2xx_3xx": number(r"Non-2xx or 3xx responses: (\d+)") or 0,
    }
    errors = re.search(
        r"^socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+), status (\d+)",
        text,
        re.MULTILINE,
    )
    result["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else None
    lat = re.search(r"^latency_us p50 (\d+) p99 (\d+) p99.9 (\d+) max (\d+)", text, re.MULTILINE)
    if lat:
        p50, p99, p999, top = (int(g) / 1000 for g in lat.groups())
        result["latency_ms"] = {"p50": p50, "p99": p99, "p99.9": p999, "max": top}
    ticks, hz = number(r"^server_cpu_ticks: (\d+)"), number(r"^clk_tck: (\d+)")
    seconds = number(r"^duration_us: (\d+)")
    if ticks is not None and hz and seconds and result["requests"]:
        cpu = ticks / hz
        # The server's share of one core during the run (about 100 % when it is the bottleneck;
        # less when something else ran on its core), and throughput per server CPU-second.
        result["server_cpu_pct"] = round(100 * cpu / (seconds / 1e6), 1)
        result["per_cpu_second"] = round(result["requests"] / cpu, 1) if cpu else None
    result["ok"] = (
        result["requests_per_s"] is not None
        and result["non_200"] == 0
        and result["non_2xx_3xx"] == 0
        and result["socket_errors"] == 0
    )
    return result


def check_log(text: str) -> dict[str, Any]:
    events: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    unparsed = 0
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            unparsed += 1
            continue
        events[entry.get("event", "?")] += 1
        if entry.get("event") == "admission":
            outcomes[f"{entry.get('outcome')}/{entry.get('reason')}"] += 1
    return {
        "admissions": events["admission"],
        "outcomes": dict(outcomes),
        "warnings_or_errors": sum(
            n
            for e, n in events.items()
            if e
            not in ("admission", "started", "source_loaded", "signal", "shutting_down", "stopped")
        ),
        "unparsed_lines": unparsed,
    }


def check_metrics(text: str) -> dict[str, Any]:
    codes: dict[str, float] = {}
    pattern = re.compile(r"^http_request_count\{(?P<labels>[^}]*)\} (?P<value>[\d.e+]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if labels.get("path") == "/mutate":
            codes[labels.get("code", "?")] = codes.get(labels.get("code", "?"), 0) + float(
                match.group("value")
            )
    return {"mutate_by_code": codes, "non_200": sum(v for c, v in codes.items() if c != "200")}


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per server name, in first-seen order, over all rounds (BENCH_ROUNDS)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_name.setdefault(record["name"], []).append(record)
    merged = []
    for name, group in by_name.items():
        runs = [run for record in group for run in record["saturation"]["runs"]]
        rates = [r["requests_per_s"] for r in runs if r["requests_per_s"] is not None]
        fixed: dict[float, list[dict[str, Any]]] = {}
        for record in group:
            for result in record["fixed"]:
                fixed.setdefault(result["target_rate"], []).append(result)
        merged.append(
            {
                "name": name,
                "rounds": len(group),
                "stdout": group[0]["stdout"],
                "command": group[0]["command"],
                "sat_seconds": group[0]["sat_seconds"],
                "saturation": {
                    "runs": runs,
                    "median": _median(rates),
                    "min": min(rates) if rates else None,
                    "max": max(rates) if rates else None,
                    "server_cpu_pct": _median([r.get("server_cpu_pct") for r in runs]),
                    "per_cpu_second": _median([r.get("per_cpu_second") for r in runs]),
                    "latency_ms": {
                        k: _median([r.get("latency_ms", {}).get(k) for r in runs])
                        for k in ("p50", "p99", "p99.9")
                    },
                },
                "rss_kib": {
                    "idle": _median([r["rss_kib"]["idle"] for r in group]),
                    "after": _median([r["rss_kib"]["after"] for r in group]),
                    "peak": max(r["rss_kib"]["peak"] for r in group),
                },
                "fixed": [
                    {
                        "target_rate": rate,
                        "rounds": len(results),
                        "achieved_rate": _median([r["achieved_rate"] for r in results]),
                        "latency_ms": {
                            k: _median([r["latency_ms"][k] for r in results])
                            for k in ("p50", "p90", "p99", "p99.9")
                        }
                        | {"max": max(r["latency_ms"]["max"] for r in results)},
                        "p99_range": (
                            min(r["latency_ms"]["p99"] for r in results),
                            max(r["latency_ms"]["p99"] for r in results),
                        ),
                        "late_sends": sum(r["late_sends"] for r in results),
                        "server_cpu_pct": _median([r.get("server_cpu_pct") for r in results]),
                        "server_cpu_us_per_request": _median(
                            [r.get("server_cpu_us_per_request") for r in results]
                        ),
                    }
                    for rate, results in fixed.items()
                ],
                "checks": [r["checks"] for r in group if r.get("checks")],
            }
        )
    return merged


def render(lines: list[dict[str, Any]]) -> str:
    meta = next((x for x in lines if x.get("kind") == "meta"), {})
    targets = merge([x for x in lines if x.get("kind") == "target"])
    out: list[str] = []
    out.append(f"### Webhook benchmark, {meta.get('date', '?')}")
    out.append("")
    out.append(
        f"Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores; server on CPU "
        f"{meta.get('server_cpu')}, load generator on CPU {meta.get('load_cpu')}; "
        f"{meta.get('connections')} keep-alive TLS connections to 127.0.0.1; review body "
        f"{meta.get('body_bytes')} bytes; Python {meta.get('python')}, aiohttp "
        f"{meta.get('aiohttp')}; load average at start {meta.get('loadavg')}."
    )
    out.append("")
    bare = next((t for t in targets if t["name"] == "bare"), None)
    bare_rps = bare["saturation"]["median"] if bare else None
    out.append(
        'Saturation (wrk, closed loop): median over all runs, min-max in brackets. "server CPU" '
        "is the server's share of its core during the runs (below 100 % means something else "
        'ran there); "per CPU-second" is requests per second of server CPU time.'
    )
    out.append("")
    out.append(
        "| server | stdout | admissions/s | vs bare | server CPU | per CPU-second "
        "| wrk p50 / p99 / p99.9 (ms) | RSS idle / after load / peak (MiB) |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for t in targets:
        sat = t["saturation"]
        ratio = f"{sat['median'] / bare_rps:.0%}" if bare_rps and sat["median"] else "n/a"
        lat = sat["latency_ms"]
        stdout = "file" if t["stdout"] != "/dev/null" else "/dev/null"
        out.append(
            f"| {t['name']} | {stdout} | {_fmt(sat['median'], 0)} "
            f"({_fmt(sat['min'], 0)}-{_fmt(sat['max'], 0)}; {len(sat['runs'])} x "
            f"{t['sat_seconds']:g} s) | {ratio} | {_fmt(sat['server_cpu_pct'], 0)} % "
            f"| {_fmt(sat['per_cpu_second'], 0)} "
            f"| {_fmt(lat['p50'])} / {_fmt(lat['p99'])} / {_fmt(lat['p99.9'])} "
            f"| {_fmt(t['rss_kib']['idle'] / 1024, 1)} / {_fmt(t['rss_kib']['after'] / 1024, 1)} "
            f"/ {_fmt(t['rss_kib']['peak'] / 1024, 1)} |"
        )
    contended = [
        t["name"] for t in targets if (t["saturation"]["server_cpu_pct"] or 100) < CONTENDED_CPU_PCT
    ]
    if contended:
        out.append("")
        out.append(
            f"WARNING: the server got less than {CONTENDED_CPU_PCT} % of its core during "
            f"saturation for {', '.join(contended)}: other processes ran on it, so these "
            'throughput figures understate it (see "per CPU-second"); rerun on a quiet '
            "machine, with BENCH_ROUNDS, or with BENCH_NICE=-20."
        )
    if any(t["fixed"] for t in targets):
        out.append("")
        out.append(
            "Fixed rates (benchmarks/fixed_rate.py, open loop; latency in ms from the send, or "
            "from the scheduled time when the request had to wait for a free connection; "
            "percentiles are medians over rounds, max is the worst):"
        )
        out.append("")
        out.append(
            "| server | rate (req/s) | achieved | p50 | p90 | p99 | p99.9 | max | late sends "
            "| server CPU | CPU us/request |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for t in targets:
            for r in t["fixed"]:
                lat = r["latency_ms"]
                p99 = _fmt(lat["p99"], 3)
                if r["rounds"] > 1:
                    p99 += f" ({_fmt(r['p99_range'][0], 3)}-{_fmt(r['p99_range'][1], 3)})"
                out.append(
                    f"| {t['name']} | {r['target_rate']:g} | {_fmt(r['achieved_rate'], 0)} "
                    f"| {_fmt(lat['p50'], 3)} | {_fmt(lat['p90'], 3)} | {p99} "
                    f"| {_fmt(lat['p99.9'], 3)} | {_fmt(lat['max'], 3)} | {r['late_sends']} "
                    f"| {_fmt(r['server_cpu_pct'], 0)} % "
                    f"| {_fmt(r['server_cpu_us_per_request'], 0)} |"
                )
    out.append("")
    ours = next((t for t in targets if t["name"] == "ours"), None)
    if ours:
        out.append("Targets (the webhook with its log going to a file, `ours`):")
        out.append("")
        out.extend(
            f"- {label}: {value} -> {'MET' if met else 'NOT MET'}"
            for label, value, met in target_checks(ours, bare_rps)
        )
        out.append("")
    out.extend(
        f"Checks, {t['name']} (round 1): {json.dumps(t['checks'][0], sort_keys=True)}"
        for t in targets
        if t["checks"]
    )
    out.append("")
    if meta.get("command"):
        out.append(f"Command: `{meta['command']}`")
        out.append("")
    out.extend(f"- `{t['name']}`: `{t['command']}`" for t in targets)
    return "\n".join(out) + "\n"


def target_checks(ours: dict[str, Any], bare_rps: float | None) -> list[tuple[str, str, bool]]:
    rps = ours["saturation"]["median"] or 0.0
    checks = [
        (f"throughput >= {TARGET_THROUGHPUT:,.0f}/s", f"{rps:,.0f}/s", rps >= TARGET_THROUGHPUT)
    ]
    if bare_rps:
        ratio = rps / bare_rps
        checks.append((f">= {TARGET_RATIO:.0%} of bare", f"{ratio:.0%}", ratio >= TARGET_RATIO))
    at = next((r for r in ours["fixed"] if r["target_rate"] == TARGET_P99_RATE), None)
    if at:
        p99 = at["latency_ms"]["p99"]
        checks.append(
            (
                f"p99 <= {TARGET_P99_MS:g} ms at {TARGET_P99_RATE}/s",
                f"{p99:.3f} ms",
                p99 <= TARGET_P99_MS,
            )
        )
    return checks


def targets_met(lines: list[dict[str, Any]]) -> bool:
    targets = {t["name"]: t for t in merge([x for x in lines if x.get("kind") == "target"])}
    if "ours" not in targets:
        return True
    bare = targets.get("bare")
    bare_rps = bare["saturation"]["median"] if bare else None
    return all(met for _, _, met in target_checks(targets["ours"], bare_rps))


def saturation_summary(files: list[str]) -> dict[str, Any]:
    runs = [parse_wrk(Path(f).read_text()) for f in files]
    rates = [r["requests_per_s"] for r in runs if r["requests_per_s"] is not None]
    return {
        "runs": runs,
        "median": statistics.median(rates) if rates else None,
        "min": min(rates) if rates else None,
        "max": max(rates) if rates else None,
        "ok": all(r["ok"] for r in runs),
    }


def target_record(args: list[str]) -> dict[str, Any]:
    """Arguments: NAME ROUND STDOUT COMMAND SAT_SECONDS RSS_IDLE RSS_AFTER RSS_PEAK CHECKS_JSON,
    then -- and the wrk outputs, then -- and the fixed_rate.py outputs."""
    name, round_, stdout, command, sat_seconds, idle, after, peak, checks = args[:9]
    rest = args[9:]
    split = rest.index("--", 1)
    wrk_files, fixed_files = rest[1:split], rest[split + 1 :]
    return {
        "kind": "target",
        "name": name,
        "round": int(round_),
        "stdout": stdout,
        "command": command,
        "sat_seconds": float(sat_seconds),
        "rss_kib": {"idle": int(idle), "after": int(after), "peak": int(peak)},
        "checks": json.loads(checks),
        "saturation": saturation_summary(wrk_files),
        "fixed": [json.loads(Path(f).read_text()) for f in fixed_files],
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit(__doc__)
    command, args = argv[0], argv[1:]
    if command == "wrk":
        print(json.dumps(parse_wrk(Path(args[0]).read_text())))
    elif command == "saturation":
        print(json.dumps(saturation_summary(args)))
    elif command == "log":
        print(json.dumps(check_log(Path(args[0]).read_text())))
    elif command == "metrics":
        print(json.dumps(check_metrics(Path(args[0]).read_text())))
    elif command == "target":
        print(json.dumps(target_record(args)))
    elif command == "render":
        lines = [json.loads(x) for x in Path(args[0]).read_text().splitlines() if x.strip()]
        print(render(lines), end="")
    elif command == "targets-met":
        lines = [json.loads(x) for x in Path(args[0]).read_text().splitlines() if x.strip()]
        return 0 if targets_met(lines) else 1
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
