"""Give back the memory of a TLS connection's read buffers between requests (CPython, glibc).

Measured with benchmarks/robustness/per_connection.py (benchmarks/README.md, Robustness): an
open keep-alive TLS connection that has taken one 300 KiB request held ~120 KiB more resident
than one that has taken only reviews, though both buffers below hold nothing between requests:

- uvloop's receive buffer (256 KiB, malloc'd once per connection). The kernel writes only what
  it received, but one large request leaves every page it touched resident for the life of the
  connection, and a buffer carved out of heap memory that closed connections had written is
  resident in full from the start.
- The memory BIO that OpenSSL decrypts from (and the one it encrypts into): it grows to the
  largest read and never shrinks.

Their pages are handed back to the kernel (madvise MADV_DONTNEED: the mapping stays, a page is
resident again, zeroed, when next written) after the TLS handshake and after a large request.
Nothing read or written changes. Both are reached through public interfaces where there are
some (uvloop's `get_buffer`, OpenSSL's BIO_get_mem_ptr); the BIO's pointer comes from CPython's
`ssl.MemoryBIO`, which holds it right after the object header (Modules/_ssl.c), and OpenSSL is
the library Python's _ssl module links. Where any of this is not as expected, nothing is done.
(OpenSSL's SSL_MODE_RELEASE_BUFFERS, tried too, changed nothing measurable: not used.)
"""

from __future__ import annotations

import _ssl
import asyncio
import ctypes
import gc
import mmap
import ssl
import sys
from typing import Any

__all__ = ["release_read_buffers"]

_BIO_C_GET_BUF_MEM_PTR = 115
_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


class _BufMem(ctypes.Structure):
    """OpenSSL's BUF_MEM (openssl/buffer.h, public): what a memory BIO keeps its bytes in."""

    _fields_ = [
        ("length", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("max", ctypes.c_size_t),
        ("flags", ctypes.c_ulong),
    ]


class _Native:
    def __init__(self) -> None:
        openssl = ctypes.CDLL(_ssl.__file__)  # its symbols resolve to the libssl it links
        self.bio_ctrl = openssl.BIO_ctrl
        self.bio_ctrl.restype = ctypes.c_long
        self.bio_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        libc = ctypes.CDLL(None, use_errno=True)
        self.madvise = libc.madvise
        self.madvise.restype = ctypes.c_int
        self.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _pointer(obj: object) -> int | None:
    """The C pointer a CPython _ssl object holds first, right after its header."""
    return ctypes.c_void_p.from_address(id(obj) + object.__basicsize__).value


def _buf_mem(native: _Native, bio: ssl.MemoryBIO) -> _BufMem | None:
    pointer = _pointer(bio)
    buf = ctypes.POINTER(_BufMem)()
    if not pointer or native.bio_ctrl(pointer, _BIO_C_GET_BUF_MEM_PTR, 0, ctypes.byref(buf)) <= 0:
        return None
    return buf.contents


def _load() -> _Native | None:
    """OpenSSL and madvise, once a probe BIO has shown that its pointer is where expected."""
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return None
    try:
        native = _Native()
    except (OSError, AttributeError):  # a static OpenSSL, or no madvise
        return None
    probe = ssl.MemoryBIO()
    probe.write(b"probe")
    mem = _buf_mem(native, probe)
    if mem is None or mem.length != 5 or ctypes.string_at(mem.data, 5) != b"probe":
        return None
    return native


_native = _load()


def _dontneed(native: _Native, start: int, end: int) -> int:
    """Hand back the whole pages within [start, end); the bytes so handed back."""
    first = -(-start // _PAGE) * _PAGE
    last = end // _PAGE * _PAGE
    if last <= first or native.madvise(first, last - first, _MADV_DONTNEED) != 0:
        return 0
    return last - first


def _ssl_protocol(transport: asyncio.BaseTransport) -> Any:
    """The SSL protocol under an application's transport: asyncio names it, uvloop's (a
    Cython class) only lets the garbage collector see it."""
    found = getattr(transport, "_ssl_protocol", None)
    if found is not None:
        return found
    for referent in gc.get_referents(transport):
        if type(referent).__name__ == "SSLProtocol" and hasattr(referent, "get_buffer"):
            return referent
    return None


def _release_bio(native: _Native, bio: object) -> int:
    """The pages of a memory BIO's buffer past the bytes it holds."""
    if not isinstance(bio, ssl.MemoryBIO) or bio.pending:
        return 0
    mem = _buf_mem(native, bio)
    if mem is None or not mem.data or mem.max < mem.length:
        return 0
    return _dontneed(native, mem.data + mem.length, mem.data + mem.max)


def release_read_buffers(transport: asyncio.BaseTransport | None) -> int:
    """Hand back the pages of this TLS connection's receive buffer and of the unused part of
    its incoming BIO (both hold nothing between two reads). Returns the bytes handed back
    (resident or not); 0 when the layout is not the expected one. Call it between reads."""
    native = _native
    if native is None or transport is None:
        return 0
    protocol = _ssl_protocol(transport)
    if protocol is None:
        return 0
    released = 0
    try:
        # The whole buffer (a size of 0 never grows it). asyncio's is a view it keeps: not
        # ours to release.
        view = protocol.get_buffer(0)
    except (AttributeError, TypeError):
        return 0
    if isinstance(view, memoryview) and not view.readonly and view.nbytes >= _PAGE:
        start = ctypes.addressof(ctypes.c_char.from_buffer(view))
        released += _dontneed(native, start, start + view.nbytes)
    for bio in _memory_bios(protocol):
        released += _release_bio(native, bio)
    return released


def _memory_bios(protocol: object) -> list[ssl.MemoryBIO]:
    """The protocol's incoming and outgoing BIOs: asyncio's attributes, uvloop's (C fields)
    seen by the garbage collector."""
    named = [getattr(protocol, name, None) for name in ("_incoming", "_outgoing")]
    if not any(named):
        named = list(gc.get_referents(protocol))
    return [bio for bio in named if isinstance(bio, ssl.MemoryBIO)]
