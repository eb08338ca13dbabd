"""Decrypted bytes land in one buffer the whole listener shares, not in a new 256 KiB one.

A TLS transport hands a plain `asyncio.Protocol` (aiohttp's request handler is one) each
decrypted piece as a new bytes object, and uvloop allocates 256 KiB for it before OpenSSL
fills it. glibc serves an allocation that large with a mapping of its own, so every read cost
an mmap, an mremap (the shrink to what was read) and a munmap: 19 µs a read, against 1.5-2.3
µs into a buffer (benchmarks/tls_reads.py; strace of the server under load in
benchmarks/README.md). A `BufferedProtocol` is handed a buffer to decrypt into instead.

The transport asks for the buffer, fills it and reports how much it wrote in one synchronous
step, so one buffer serves every connection of the event loop: `buffer_updated` copies the
bytes out before anything else runs. The copy is what the handler keeps (aiohttp may hold on
to a tail of it), so nothing ever aliases the shared buffer. Both uvloop's and asyncio's TLS
and plain transports take this path for a protocol that is a `BufferedProtocol` and not a
`Protocol`, which is why the handler is wrapped rather than given the two methods.
"""

from __future__ import annotations

import asyncio

__all__ = ["READ_SIZE", "BufferedReads", "SharedBuffer"]

READ_SIZE = 64 * 1024
"""Four full TLS records. A longer body arrives in more reads; its pages stay resident once,
for the whole process, not per connection."""


class SharedBuffer:
    """The buffer every connection of one event loop decrypts into."""

    __slots__ = ("view",)

    def __init__(self, size: int = READ_SIZE) -> None:
        self.view = memoryview(bytearray(size))


class BufferedReads(asyncio.BufferedProtocol):
    """Gives the transport the shared buffer and passes each read on to `protocol` as bytes;
    everything else goes to `protocol` unchanged."""

    __slots__ = ("_buffer", "protocol")

    def __init__(self, protocol: asyncio.Protocol, buffer: SharedBuffer) -> None:
        self.protocol = protocol
        self._buffer = buffer.view

    def get_buffer(self, sizehint: int) -> memoryview:  # noqa: ARG002 - all of it, always
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.protocol.data_received(self._buffer[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.protocol.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()
