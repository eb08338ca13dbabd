#!/usr/bin/env python3
"""Summarise a py-spy profile taken with `--format raw` (collapsed stacks, one per line, with a
sample count at the end): the top functions by self time and by total (inclusive) time, and a
breakdown of where the server's time goes by area (TLS, HTTP, JSON, mutation, metrics, logs).

    py-spy record --pid PID --duration 10 --rate 250 --format raw --output ours.raw
    python benchmarks/profile_summary.py ours.raw [--top 25]

Frames are merged by function and file (line numbers dropped). Percentages are of the samples of
busy threads (an idle thread-pool worker is left out). Time in C (TLS, socket syscalls, the JSON
scanner) counts for the Python frame that called it.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# A sample belongs to the first area, in this order, that one of its frames matches (any frame,
# or only the innermost one for leaf areas): JSON rendered for a log line counts as logging, the
# patch's JSON and base64 as building the response, a send() under TLS as a socket syscall.
AREAS = (
    (
        "logging (structlog, _log_admission, incl. its JSON and write)",
        re.compile(r"structlog/|_log_admission|logging/"),
        False,
    ),
    (
        "metrics (prometheus_client, webhook/server/metrics.py)",
        re.compile(r"prometheus_client/|webhook/server/metrics\.py"),
        False,
    ),
    (
        "JSON decode of the review (json.loads)",
        re.compile(r"json/decoder\.py|^loads \(json/"),
        False,
    ),
    (
        "building the response (respond, patch JSON + base64, response json.dumps)",
        re.compile(
            r"^(respond|encode_patch|dumps) \(webhook/admission/reviews\.py|"
            r"^(answer|warnings_for|audit_annotations) \(webhook/admission/verdicts\.py|"
            r"json/encoder\.py|^dumps \(json/|base64\.py"
        ),
        False,
    ),
    (
        "admission logic (parse_review, decide, store lookups)",
        re.compile(
            r"webhook/admission/(mutation|patches|entries|notes)\.py|webhook/sources/store\.py|"
            r"webhook/config\.py|^parse_review "
        ),
        False,
    ),
    (
        "socket syscalls (send, recv, epoll)",
        re.compile(
            r"^_SelectorSocketTransport\.(write|_read_ready__get_buffer) |^EpollSelector\.select "
        ),
        True,
    ),
    (
        "TLS encrypt/decrypt (asyncio sslproto, ssl)",
        re.compile(r"asyncio/sslproto\.py|/ssl\.py"),
        False,
    ),
    (
        "webhook handler glue (webhook/server/app.py self time)",
        re.compile(r"webhook/server/app\.py"),
        True,
    ),
    (
        "aiohttp (HTTP parse, request, response, routing)",
        re.compile(r"aiohttp/|multidict|yarl/"),
        False,
    ),
    ("asyncio event loop", re.compile(r"asyncio/|selectors\.py"), False),
)


# py-spy does not see these threads as idle, but they only wait on their queue: the pool behind
# asyncio.to_thread (file and certificate polling). Their samples are left out.
IDLE_LEAVES = frozenset({"_worker (concurrent/futures/thread.py)"})


def frame_name(frame: str) -> str:
    """`func (path/file.py:123)` -> `func (path/file.py)`."""
    return re.sub(r":\d+\)$", ")", frame.strip())


@dataclass
class Profile:
    """Sample counts of the busy threads: per function (self and inclusive) and per area."""

    self_time: Counter[str] = field(default_factory=Counter)
    total_time: Counter[str] = field(default_factory=Counter)
    areas: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    idle: int = 0


def area_of(frames: list[str]) -> str:
    for label, pattern, leaf_only in AREAS:
        if any(pattern.search(f) for f in (frames[-1:] if leaf_only else frames)):
            return label
    return "other"


def read_profile(text: str) -> Profile:
    profile = Profile()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        if frames[-1] in IDLE_LEAVES:
            profile.idle += n
            continue
        profile.samples += n
        profile.self_time[frames[-1]] += n
        for name in set(frames):
            profile.total_time[name] += n
        profile.areas[area_of(frames)] += n
    return profile


def report(profile: Profile, top: int) -> None:
    samples = profile.samples

    def pct(n: int) -> str:
        return f"{100 * n / samples:5.1f} %"

    print(f"{samples} samples ({profile.idle} more from idle pool threads left out)\n")
    print("By area (each sample counted once; see AREAS for the order):")
    for label, n in profile.areas.most_common():
        print(f"  {pct(n)}  {label}")
    print(f"\nTop {top} by self time:")
    for name, n in profile.self_time.most_common(top):
        print(f"  {pct(n)}  {name}")
    print(f"\nTop {top} by total time (inclusive), below the event loop's dispatch:")
    # runpy, main, asyncio.run, run_forever...: in every sample, so left out.
    below = [(name, n) for name, n in profile.total_time.most_common() if n < samples * 0.97]
    for name, n in below[:top]:
        print(f"  {pct(n)}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description="summarise a py-spy raw profile")
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    report(read_profile(Path(args.raw).read_text()), args.top)


if __name__ == "__main__":
    main()
