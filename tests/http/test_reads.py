"""webhook.server.reads: one decrypt buffer for every connection, on uvloop and on asyncio.

Many clients over real TLS at once, each request answered from its own bytes; the copy a
protocol was handed never changes afterwards; and the webhook's own site serves every
connection through it."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.http.conftest import Authority
from tests.http.helpers import echo_site
from webhook.server.reads import BufferedReads, SharedBuffer

pytestmark = pytest.mark.timeout(60)

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


class Digest(asyncio.Protocol):
    """Answers every line with the SHA-256 of the line, once the whole line has arrived;
    keeps every piece it was handed."""

    def __init__(self) -> None:
        self.pending = b""
        self.pieces: list[bytes] = []
        self.buffers = 0
        """Times the transport asked for the buffer to decrypt into."""

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes  # a copy, never a view of the shared buffer
        self.pieces.append(data)
        self.pending += data
        while b"\n" in self.pending:
            line, _, self.pending = self.pending.partition(b"\n")
            self.transport.write(hashlib.sha256(line).hexdigest().encode() + b"\n")


class Counted(BufferedReads):
    def get_buffer(self, sizehint: int) -> memoryview:
        assert isinstance(self.protocol, Digest)
        self.protocol.buffers += 1
        return super().get_buffer(sizehint)


def _contexts(tmp_path: Path, authority: Authority) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = authority.issue()
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return server, ssl.create_default_context(cadata=authority.cert.decode())


async def _client(port: int, context: ssl.SSLContext, seed: int) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    # Lines from a few bytes to several TLS records, written in pieces, so that reads of
    # different connections interleave and fill the shared buffer to different depths.
    for size in (7, 20_000, 150_000, 64 * 1024, 1):
        line = bytes([97 + (seed + size) % 26]) * size
        for start in range(0, size, 9_000):
            writer.write(line[start : start + 9_000])
            await writer.drain()
        writer.write(b"\n")
        async with asyncio.timeout(20):
            answer = await reader.readline()
        assert answer == hashlib.sha256(line).hexdigest().encode() + b"\n"
    writer.close()
    await writer.wait_closed()


async def _serve_many(tmp_path: Path, authority: Authority) -> list[Digest]:
    server_context, client_context = _contexts(tmp_path, authority)
    shared = SharedBuffer(16 * 1024)  # smaller than a record or two: reads take several turns
    handlers: list[Digest] = []

    def factory() -> BufferedReads:
        handler = Digest()
        handlers.append(handler)
        return Counted(handler, shared)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        await asyncio.gather(*(_client(port, client_context, seed) for seed in range(12)))
    finally:
        server.close()
        await server.wait_closed()
    return handlers


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_many_tls_connections_share_one_buffer_and_each_gets_its_own_bytes(
    tmp_path: Path, authority: Authority, loop: str
) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        handlers = runner.run(_serve_many(tmp_path, authority))

    assert len(handlers) == 12
    for seed, handler in enumerate(handlers):
        # What each was handed is still exactly what its client sent, after every other
        # connection has written through the same buffer since.
        assert len(handler.pieces) > 1
        assert handler.buffers >= len(handler.pieces)  # the transport decrypted into it
        assert sum(map(len, handler.pieces)) == 7 + 20_000 + 150_000 + 64 * 1024 + 1 + 5
        assert handler.pending == b""
        assert any(piece.startswith(bytes([97 + (seed + 7) % 26])) for piece in handler.pieces)


def test_the_wrapper_passes_the_rest_of_the_protocol_through() -> None:
    calls: list[tuple[str, object]] = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            calls.append(("made", transport))

        def connection_lost(self, exc: Exception | None) -> None:
            calls.append(("lost", exc))

        def eof_received(self) -> bool:
            calls.append(("eof", None))
            return True

        def pause_writing(self) -> None:
            calls.append(("pause", None))

        def resume_writing(self) -> None:
            calls.append(("resume", None))

        def data_received(self, data: bytes) -> None:
            calls.append(("data", data))

    shared = SharedBuffer(8)
    first, second = BufferedReads(Recorder(), shared), BufferedReads(Recorder(), shared)
    transport = asyncio.Transport()
    error = ConnectionResetError()

    first.connection_made(transport)
    buffer = first.get_buffer(-1)
    buffer[:3] = b"abc"
    first.buffer_updated(3)
    second.get_buffer(100)[:2] = b"xy"  # overwrites what `first` was given a copy of
    second.buffer_updated(2)
    assert first.eof_received() is True
    first.pause_writing()
    first.resume_writing()
    first.connection_lost(error)

    assert len(buffer) == 8
    assert calls == [
        ("made", transport),
        ("data", b"abc"),
        ("data", b"xy"),
        ("eof", None),
        ("pause", None),
        ("resume", None),
        ("lost", error),
    ]


async def _site_protocols(tmp_path: Path, authority: Authority) -> list[object]:
    """The protocol each TLS transport of a GuardedSite hands its bytes to."""
    from webhook.config import Limits

    server_context, client_context = _contexts(tmp_path, authority)
    runner, site = await echo_site(server_context, Limits())
    await site.start()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", site.port, ssl=client_context, server_hostname="127.0.0.1"
        )
        body = b"y" * 100_000
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(6) == b"100000"
        protocols: list[object] = []
        for connection in site.connections:
            assert connection.transport is not None
            protocols.append(connection.transport.get_protocol())
        assert all(p.protocol in site.connections for p in protocols)  # type: ignore[attr-defined]
        writer.close()
    finally:
        await runner.cleanup()
    return protocols


def test_the_webhook_site_decrypts_into_the_shared_buffer(
    tmp_path: Path, authority: Authority
) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        protocols = runner.run(_site_protocols(tmp_path, authority))
    assert len(protocols) == 1
    assert isinstance(protocols[0], BufferedReads)
