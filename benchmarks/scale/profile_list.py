#!/usr/bin/env python3
"""Where the webhook's memory and CPU go when it lists N ServiceAccounts (default 100,000).

Runs the real reflectors (`webhook.sources.informers`) in this process against the fake API
server (in its own process), without the HTTPS and metrics servers, and reports RSS (MiB) at each
step. Each variant runs in a fresh process, so that VmHWM (peak RSS) belongs to it alone:

* `paged`: the code as it is: `Api.list_all` returns a `Listing` that reads one page at a time
  while the reflector turns its items into store entries. Peak and RSS at ready, and how long a
  full `gc.collect()` takes then (a full collection stops the event loop, admission included).
* `held`: what the reflector did before commit 3c76fd9, patched in this process only: every raw
  object of every page is read before the store sees any, and the list stays referenced while
  the reflector watches. Then the script drops it and measures again.
* `cpu`: cProfile of listing plus building the entries as the informers do, in the main thread;
  the functions with the most own time.

    .venv/bin/python benchmarks/scale/profile_list.py [--service-accounts N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

VARIANTS = ("paged", "held", "cpu")


def memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in MiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) // 1024
    return found


def fake_api(count: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kube.fakeapi", "--service-accounts", str(count)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout is not None else ""
    return process, int(json.loads(line)["port"])


def full_collection() -> float:
    began = time.perf_counter()
    gc.collect()
    return round(time.perf_counter() - began, 3)


def cpu_profile(count: int) -> dict[str, Any]:
    import cProfile
    import io
    import pstats

    from webhook import kube
    from webhook.config import Config
    from webhook.sources import informers

    fake, port = fake_api(count)
    config = Config(kube_api=f"http://127.0.0.1:{port}")
    api = kube.Api(kube.client_configuration(config))
    profile = cProfile.Profile()
    started, cpu = time.monotonic(), time.process_time()
    try:
        profile.enable()
        listing = api.list_all("/api/v1/serviceaccounts", {})
        entries = {informers._key(o): informers._entry(o, config.mutation) for o in listing}  # noqa: SLF001
        profile.disable()
    finally:
        fake.terminate()
        fake.wait()
    report: dict[str, Any] = {
        "variant": "cpu",
        "entries": len(entries),
        "wall seconds": round(time.monotonic() - started, 2),
        "CPU seconds": round(time.process_time() - cpu, 2),
    }
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(6)
    table = text.getvalue().split("filename:lineno(function)", 1)[1]
    report["top own time (ncalls tottime percall cumtime percall function)"] = "\n" + "\n".join(
        "    " + line.strip() for line in table.strip().splitlines()
    )
    return report


def variant(name: str, count: int) -> dict[str, Any]:
    if name == "cpu":
        return cpu_profile(count)
    fake, port = fake_api(count)
    import kubernetes  # noqa: F401 - its import is part of the baseline

    from webhook import kube
    from webhook.config import Config
    from webhook.sources.informers import start_informers
    from webhook.sources.store import Store

    report: dict[str, Any] = {"variant": name, "baseline": memory()}
    held: list[list[Any]] = []

    class Held(kube.Listing):
        """Reads every page up front and keeps the raw objects, as before 3c76fd9."""

        def __init__(self, api: kube.Api, path: str, query: Mapping[str, str]) -> None:
            super().__init__(api, path, query)
            self.items = list(super().__iter__())
            held.append(self.items)
            report["every raw object read"] = memory()

        def __iter__(self) -> Iterator[Any]:
            return iter(self.items)

    if name == "held":
        held_listing = lambda self, path, query: Held(self, path, query)  # noqa: E731, PLW0108
        kube.Api.list_all = held_listing  # type: ignore[method-assign]

    async def run() -> None:
        config = Config(kube_api=f"http://127.0.0.1:{port}")
        store = Store(config.mutation)
        started = time.monotonic()
        reflectors = start_informers(config, store, asyncio.get_running_loop())
        while not store.ready:  # noqa: ASYNC110 - the store has no event to wait on
            await asyncio.sleep(0.01)
        report["seconds to ready"] = round(time.monotonic() - started, 2)
        report["at ready"] = memory()
        report["full gc at ready (s)"] = full_collection()
        if held:
            for items in held:
                items.clear()
            gc.collect()
            await asyncio.sleep(0.5)
            report["raw objects dropped"] = memory()
            report["full gc, raw objects dropped (s)"] = full_collection()
        await reflectors.close()

    try:
        asyncio.run(run())
    finally:
        fake.terminate()
        fake.wait()
    return report


def lines(reports: list[dict[str, Any]]) -> Iterator[str]:
    for report in reports:
        yield f"## {report.pop('variant')}"
        for key, value in report.items():
            yield f"  {key}: {value}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--service-accounts", type=int, default=100_000)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(variant(args.variant, args.service_accounts)))
        return 0
    reports = []
    for name in VARIANTS:
        command = [sys.executable, __file__, "--variant", name]
        command += ["--service-accounts", str(args.service_accounts)]
        answer = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
        reports.append(json.loads(answer.stdout.strip().splitlines()[-1]))
    print(f"# {args.service_accounts:,} ServiceAccounts; RSS and VmHWM in MiB")
    print("\n".join(lines(reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
