"""webhook.server.tlsbuffers on real TLS connections over loopback, on uvloop and on asyncio.

After a large request the receive buffer's pages are resident (mincore says so); handed back,
they are not, and the connection goes on carrying bytes exactly."""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.http.conftest import Authority
from tests.http.helpers import echo_site
from webhook.server import tlsbuffers

pytestmark = pytest.mark.timeout(60)

LARGE = 200 * 1024


def _resident_pages(view: memoryview) -> int:
    """Pages of the buffer behind `view` that are in memory (mincore)."""
    start = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return _resident(start, start + view.nbytes)


def _bio_resident_pages(bio: ssl.MemoryBIO) -> int:
    """Pages of a memory BIO's buffer, past the bytes it holds, that are in memory."""
    assert tlsbuffers._native is not None
    mem = tlsbuffers._buf_mem(tlsbuffers._native, bio)
    assert mem is not None
    assert mem.data is not None
    return _resident(mem.data + mem.length, mem.data + mem.max)


def _resident(start: int, end: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    first = -(-start // page) * page
    last = end // page * page
    if last <= first:
        return 0
    vector = (ctypes.c_ubyte * ((last - first) // page))()
    assert libc.mincore(ctypes.c_void_p(first), ctypes.c_size_t(last - first), vector) == 0
    return sum(byte & 1 for byte in vector)


class Echo(asyncio.Protocol):
    """Answers every complete line with its length, once the whole line has arrived."""

    def __init__(self, made: asyncio.Future[Any]) -> None:
        self.made = made
        self.pending = b""

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while b"\n" in self.pending:
            line, _, self.pending = self.pending.partition(b"\n")
            self.transport.write(b"%d\n" % len(line))


async def _exchange(tmp_path: Path, authority: Authority) -> None:
    cert, key = authority.issue()
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_context = ssl.create_default_context(cadata=authority.cert.decode())
    loop = asyncio.get_running_loop()
    made: asyncio.Future[Any] = loop.create_future()
    server = await loop.create_server(lambda: Echo(made), "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context, server_hostname="127.0.0.1"
    )
    async with asyncio.timeout(20):
        transport = await made
    try:
        protocol = tlsbuffers._ssl_protocol(transport)
        assert protocol is not None
        incoming, outgoing = tlsbuffers._memory_bios(protocol)  # found on both loops
        for size in (LARGE, 10, LARGE):
            writer.write(b"x" * size + b"\n")
            async with asyncio.timeout(20):
                assert await reader.readline() == b"%d\n" % size
            buffer = protocol.get_buffer(0)
            if size == LARGE:
                assert _resident_pages(buffer) >= 2  # written by the large request's reads
                assert _bio_resident_pages(incoming) >= 2  # grown to the largest read
            released = tlsbuffers.release_read_buffers(transport)
            assert released >= buffer.nbytes - 2 * mmap.PAGESIZE
            assert _resident_pages(buffer) == 0
            assert _bio_resident_pages(incoming) == 0
            assert _bio_resident_pages(outgoing) == 0
            del buffer
    finally:
        writer.close()
        transport.close()
        server.close()
        async with asyncio.timeout(20):
            await server.wait_closed()


@pytest.mark.parametrize(
    "new_loop", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"]
)
def test_the_read_buffers_are_handed_back_and_the_connection_goes_on(
    tmp_path: Path, authority: Authority, new_loop: Callable[[], asyncio.AbstractEventLoop]
):
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(_exchange(tmp_path, authority))


def test_a_plain_transport_or_none_is_left_alone():
    assert tlsbuffers.release_read_buffers(None) == 0

    class Plain(asyncio.Transport):
        pass

    assert tlsbuffers.release_read_buffers(Plain()) == 0


def test_the_bio_probe_found_openssl():
    """On this platform (CPython, Linux, Python's own OpenSSL) the module is active."""
    assert tlsbuffers._native is not None


async def _served_with(tmp_path: Path, authority: Authority, release: bool) -> int:
    """Calls of release_read_buffers made by a GuardedSite for one handshake and one 20 KiB
    request, with `--release-tls-buffers` as given."""
    from webhook.config import Limits
    from webhook.server import connections

    calls: list[object] = []
    cert, key = authority.issue()
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    runner, site = await echo_site(server_context, Limits(release_tls_buffers=release))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connections, "release_read_buffers", calls.append)
        await site.start()
        try:
            port = site.port
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=ssl.create_default_context(cadata=authority.cert.decode()),
                server_hostname="127.0.0.1",
            )
            body = b"x" * (20 * 1024)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
            writer.write(body)
            async with asyncio.timeout(20):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            writer.close()
        finally:
            await runner.cleanup()
    return len(calls)


@pytest.mark.parametrize("release", [True, False])
def test_release_tls_buffers_false_turns_it_off(
    tmp_path: Path, authority: Authority, release: bool
) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        calls = runner.run(_served_with(tmp_path, authority, release))
    # After the handshake and after the 20 KiB request; never with the flag off.
    assert calls == (2 if release else 0)
