#!/usr/bin/env python3
"""Run the real webhook and report where its memory goes, every --every seconds, on stderr.

    python benchmarks/robustness/memory_probe.py [--every 10] [--trace] -- [webhook flags...]

Each report is one JSON line: RSS (VmRSS), glibc's allocator totals (mallinfo2: bytes handed
out from the heap arenas, bytes free inside them, bytes in mmapped chunks, number of arenas),
Python's own allocator (sys._debugmallocstats is too verbose; the block counts of pymalloc's
arenas via sys.getallocatedblocks), and with --trace the bytes tracemalloc sees (every
allocation made through Python's allocators, including a C extension's PyMem calls) and its top
sites; the TLS sessions OpenSSL keeps in its server-side cache. RSS minus the heap and mmapped
bytes in use is memory held by the allocator (freed but not returned) or by code that bypasses
malloc. Diagnostic only: --trace roughly halves throughput.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import ssl
import sys
import threading
import time
import tracemalloc
from pathlib import Path


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"))


def mallinfo() -> dict[str, float]:
    libc = _libc()
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    mib = 1024 * 1024
    return {
        "heap_mib": round(info.arena / mib, 1),
        "heap_in_use_mib": round(info.uordblks / mib, 1),
        "heap_free_mib": round(info.fordblks / mib, 1),
        "mmapped_mib": round(info.hblkhd / mib, 1),
        "mmapped_chunks": info.hblks,
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def arenas() -> int:
    """glibc arenas: one per thread that ever allocated, up to 8 x cores."""
    return sum(1 for line in Path("/proc/self/maps").read_text().splitlines() if "[heap]" in line)


def mappings() -> dict[str, object]:
    """Resident memory by kind of mapping (/proc/self/smaps): the main heap, files (code),
    glibc's thread arenas and stacks (anonymous, 1 MiB or more), and the other anonymous
    mappings by size: malloc serves each block above its mmap threshold with its own mapping,
    so a size that appears once per connection is a per-connection buffer."""
    kinds: dict[str, list[int]] = {}
    name, size = "", 0
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            size = (end - start) // 1024
            path = head[5] if len(head) > 5 else ""
            if path == "[heap]":
                name = "heap"
            elif path.startswith("/"):
                name = "files"
            elif path:
                name = path
            elif size >= 1024:
                name = "anon>=1MiB"
            else:
                name = f"anon:{size}KiB"
        elif head[0] == "Rss:":
            entry = kinds.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += int(head[1])
    ranked = sorted(kinds.items(), key=lambda item: -item[1][1])
    return {"rss_by_mapping": {k: f"{n} x, {rss / 1024:.1f} MiB" for k, (n, rss) in ranked[:8]}}


def report(trace: bool, top: int) -> dict[str, object]:
    line: dict[str, object] = {"t": round(time.monotonic(), 1), "rss_mib": rss_mib()}
    line.update(mallinfo())
    line.update(mappings())
    line["python_blocks"] = sys.getallocatedblocks()
    contexts = [o for o in gc.get_objects() if isinstance(o, ssl.SSLContext)]
    line["tls_sessions_cached"] = sum(c.session_stats()["number"] for c in contexts)
    line["gc_objects"] = len(gc.get_objects())
    line["threads"] = threading.active_count()
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        line["traced_mib"] = round(current / 1024 / 1024, 1)
        line["traced_peak_mib"] = round(peak / 1024 / 1024, 1)
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("lineno")[:top]
        line["top"] = [
            f"{s.size / 1024:.0f} KiB {s.count} {s.traceback[0].filename.split('/')[-1]}:"
            f"{s.traceback[0].lineno}"
            for s in stats
        ]
    return line


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    own, flags = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    every = float(own[own.index("--every") + 1]) if "--every" in own else 10.0
    trace = "--trace" in own
    if trace:
        tracemalloc.start(1)

    def loop() -> None:
        while True:
            time.sleep(every)
            print(json.dumps(report(trace, 12)), file=sys.stderr, flush=True)

    threading.Thread(target=loop, daemon=True, name="memory-probe").start()
    from webhook.cli import main as webhook_main

    webhook_main(flags)


if __name__ == "__main__":
    main()
