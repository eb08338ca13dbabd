"""Keep the process's resident memory to what its open connections use (glibc only).

Why: each TLS connection has a 256 KiB read buffer (uvloop's SSL_READ_MAX_SIZE, taken with
PyMem_RawMalloc, i.e. malloc), of which a review touches a page or two. glibc serves the
first of these with their own mappings, then raises its mmap threshold the first time one is
freed, and from then on carves them out of the heap, often out of memory other objects had
touched and freed, which is resident in full. With connections opening and closing, RSS grew
and never came back (issue 19: 374 MB after 300k requests on 1,000 connections, Python's own
heap flat); with both settings it stays between 138 and 187 MiB over 1,000,000 (benchmarks/
README.md, Robustness).

Two settings bound it: the mmap threshold is fixed where glibc starts it, so a buffer that
does not fit in free heap memory is its own mapping again, returned on close; and after
connections have closed, `malloc_trim` hands the free heap pages back, so whatever is carved
out of them next is resident only where it is written. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
from collections.abc import Callable

__all__ = ["fix_mmap_threshold", "trim_after_closes"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD = 128 * 1024  # where glibc starts it
TRIM_EVERY = 10.0
"""Seconds between two looks at whether connections closed (then one malloc_trim)."""


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc (and musl) have it; macOS does not
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold() -> bool:
    """Stop glibc from raising its mmap threshold. True when it was set."""
    libc = _libc()
    return libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1


async def trim_after_closes(closed: Callable[[], int]) -> None:
    """Every TRIM_EVERY seconds, return free heap pages to the system if any connection
    closed since the last time (`closed()` counts them). Runs until cancelled."""
    libc = _libc()
    if libc is None:
        await asyncio.Event().wait()  # nothing to do, but a supervised loop never ends
        return
    seen = closed()
    while True:
        await asyncio.sleep(TRIM_EVERY)
        now = closed()
        if now != seen:
            seen = now
            with contextlib.suppress(OSError):
                libc.malloc_trim(0)
