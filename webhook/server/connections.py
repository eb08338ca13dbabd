"""The HTTPS listener: every connection counted, timed, and drained on shutdown.

aiohttp's TCPSite accepts whatever the kernel hands over and leaves a connection alone while
it is idle, sending slowly or stalled. This site runs its own accept loop instead:

- At most `max_connections` are open (TLS handshakes included). At the limit a waiting client
  takes the place of the longest-idle keep-alive connection (idle for a second at least), or
  else of the oldest one that has been in its TLS handshake or its headers for over a second
  (on a working network those take milliseconds), which is closed; when there is none the
  client waits in the kernel's listen backlog until a connection finishes or has been idle
  for a second (backpressure). A client that cannot even get into the backlog sees its
  connect time out.
- A TLS handshake has `header_timeout`; so do a request's headers, from its first byte.
  Between requests, and before the first, a connection may stay idle for `idle_timeout`
  (aiohttp's keep-alive timer) unless a new client needs its place. Bodies have
  `body_timeout`, in the handler; the rest of a body answered early (408, 413) is read and
  dropped, never inflated, for at most `body_timeout` more.
- `drain()` stops without losing a request. From then on the answer to the last request read
  on a connection says `Connection: close` (requests pipelined behind it are answered first),
  so a client in the middle of its traffic moves to another connection after its next answer
  instead of writing on one that is about to close. Connections still queued in the backlog
  are accepted and served, and the listener closes. A connection is closed without an answer
  only once it has been quiet for a second: idle, nothing unread in its socket, so the client
  is not using it (the API server reuses its most recently used connection first).

One `Connection` is aiohttp's own RequestHandler with a few attributes more; the only
per-request work added is setting them. It reads two of aiohttp's private attributes
(`_request_in_progress`, `_messages`); the process-tier tests fail if aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import socket
import ssl
import sys
import termios
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog
from aiohttp import web

from webhook.config import Limits
from webhook.server.reads import BufferedReads, SharedBuffer
from webhook.server.tlsbuffers import release_read_buffers

__all__ = ["Connection", "GuardedSite"]

log = structlog.get_logger("webhook")
CloseReason = Literal["header_timeout", "evicted", "drained"]
# A burst of connects is taken in one wake-up, up to this many.
_ACCEPT_BATCH = 64
# accept() failing for lack of file descriptors or memory: wait this long before trying again
# (the connection stays in the backlog), as asyncio's own server does.
_ACCEPT_RETRY_DELAY = 1.0
# While draining, a connection quiet this long (since its last answer, or its handshake) is not
# in use by its client; one that is gets its `Connection: close` answer within milliseconds.
_QUIET = 1.0
# At the limit, a handshake or request headers taking longer than this may give way.
_SLOW = 1.0
# After a request this large, its connection's TLS read buffers are handed back (tlsbuffers.py).
_LARGE_REQUEST = 16 * 1024


class Connection(web.RequestHandler):
    """aiohttp's connection handler, which also tells the site when a request starts and ends."""

    __slots__ = (
        "_clock",
        "_site",
        "answered",
        "idle_since",
        "opened",
        "received",
        "request_complete",
        "request_started",
    )

    def __init__(self, site: GuardedSite, **kwargs: Any) -> None:
        super().__init__(site.server, loop=site.loop, **kwargs)
        self._site = site
        self._clock = site.loop.time
        self.opened = self.idle_since = self._clock()
        """Reset when the TLS handshake is done."""
        self.request_started: float | None = None
        """When the first byte of the request being received arrived; None between requests."""
        self.answered = 0
        self.request_complete = False
        """A request's headers have been parsed and it waits for, or is in, its handler."""
        self.received = 0
        """Bytes received since the TLS read buffers were last handed back."""

    @property
    def busy(self) -> bool:
        """In the handler or writing its answer (aiohttp's own flag, read-only here)."""
        return self._request_in_progress

    @property
    def idle(self) -> bool:
        return self.request_started is None and not self.busy

    @property
    def in_headers(self) -> bool:
        """Receiving a request's headers: some bytes came, no complete request is waiting
        (aiohttp queues one once its headers are parsed) and none is being handled. Under load
        a complete request may wait a while for its handler: it is not slow, and must never be
        cut."""
        return self.request_started is not None and not self.request_complete and not self.busy

    @property
    def quiet(self) -> bool:
        """Idle, and no byte of a next request waiting unread in the socket either (a busy
        event loop reads late): closing it cannot cut a request the client has written."""
        return self.idle and not _unread(self.transport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.opened = self.idle_since = self._clock()
        if self._site.release_buffers:  # perhaps carved out of memory others had written
            release_read_buffers(transport)
        self._site.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._site.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.request_started is None:
            self.request_started = self._clock()
        self.received += len(data)
        super().data_received(data)
        if self._messages:
            self.request_complete = True

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if self._site.draining and not self._messages:
            # Stopping: the last request read on this connection gets `Connection: close`, so
            # the client sends its next one elsewhere instead of on a closing connection.
            resp.force_close()
        try:
            finished = await super().finish_response(request, resp, start_time)
            # aiohttp keeps the last response until the next request arrives: not its body.
            if isinstance(resp, web.Response):
                resp.body = None
            return finished
        finally:
            # A request pipelined behind this one is already on its way.
            self.request_started = self._clock() if self._messages else None
            self.request_complete = bool(self._messages)
            self.idle_since = self._clock()
            self.answered += 1
            if self.received >= _LARGE_REQUEST and not self._messages:
                self.received = 0
                if self._site.release_buffers:
                    release_read_buffers(self.transport)
            if self._site.full:  # a client waits for room, and this connection may give it
                self._site.room.set()


class GuardedSite(web.BaseSite):
    """An HTTPS site with the limits above; `on_close(reason)` counts what it closes."""

    __slots__ = (
        "_accepting",
        "_handler_args",
        "_handshaking",
        "_limits",
        "_on_close",
        "_port",
        "_reads",
        "_socket",
        "_tasks",
        "closed_total",
        "connections",
        "draining",
        "full",
        "loop",
        "release_buffers",
        "room",
        "server",
    )

    def __init__(
        self,
        runner: web.BaseRunner,
        port: int,
        ssl_context: ssl.SSLContext,
        limits: Limits,
        *,
        handler_args: Mapping[str, Any],
        on_close: Callable[[CloseReason], None] = lambda _: None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=limits.listen_backlog)
        server = runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before making a site")
        self.server = server
        self.loop = asyncio.get_running_loop()
        self._port = port
        self._limits = limits
        self.release_buffers = limits.release_tls_buffers
        self._handler_args = {
            "access_log": None,
            **handler_args,
            "keepalive_timeout": limits.idle_timeout,
            # After an early answer (408, 413), aiohttp reads and drops the rest of the body
            # for this long before it closes the connection: no longer than a body may take.
            "lingering_time": limits.body_timeout,
        }
        self._on_close = on_close
        self._reads = SharedBuffer()
        self.connections: set[Connection] = set()
        self.closed_total = 0
        self._handshaking: dict[asyncio.Task[None], float] = {}
        """TLS handshakes in progress, and when each started."""
        self.room = asyncio.Event()
        """Set when a connection closes, or becomes idle while `full`."""
        self.full = False
        """At max_connections with a client waiting in the backlog."""
        self.draining = False
        """Draining: every last answer on a connection says `Connection: close`."""
        self._socket: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"https://0.0.0.0:{self.port}"

    @property
    def port(self) -> int:
        if self._socket is not None:
            return int(self._socket.getsockname()[1])
        return self._port

    @property
    def open_connections(self) -> int:
        return len(self.connections) + len(self._handshaking)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await super().start()
        self._socket = _listen(self._port, self._limits.listen_backlog)
        self._accepting = self.loop.create_task(
            self._accept_loop(self._socket), name="https-accept"
        )
        self._spawn(self._sweep_loop(), "https-timeouts")

    async def stop(self) -> None:
        """Close the listener and the loops (runner.cleanup then closes the connections)."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        tasks = [*self._tasks, *self._handshaking]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()

    async def drain(self, within: float) -> int:
        """Answer what clients send, each connection's last answer with `Connection: close`;
        accept what waits in the backlog, close the listener, close connections quiet for a
        second. Returns how many were still open after `within` seconds."""
        self.draining = True
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._socket is not None:
            self._accept_pending(self._socket, limit=None)
            self._socket.close()
            self._socket = None
        deadline = self.loop.time() + within
        while self.open_connections and self.loop.time() < deadline:
            quiet_since = self.loop.time() - _QUIET
            for connection in list(self.connections):
                if connection.idle_since < quiet_since and connection.quiet:
                    self._close(connection, "drained")
            self.room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.05, max(0.0, deadline - self.loop.time()))):
                    await self.room.wait()
        return self.open_connections

    # --- bookkeeping (called by Connection) -----------------------------------------------------

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.closed_total += 1
        self.room.set()

    # --- accepting ------------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        fd = listener.fileno()
        while True:
            await self._readable(fd)
            if self.open_connections >= self._limits.max_connections and not self._evict():
                # Backpressure: whoever waits stays in the backlog until a connection closes
                # or turns idle (and can be evicted).
                # A connection also becomes evictable by growing older than _SLOW: look again
                # then, even if nothing closed meanwhile.
                self.full = True
                self.room.clear()
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_SLOW / 2):
                            await self.room.wait()
                finally:
                    self.full = False
                continue
            if self._accept_pending(listener, limit=_ACCEPT_BATCH) is None:
                await asyncio.sleep(_ACCEPT_RETRY_DELAY)

    async def _readable(self, fd: int) -> None:
        ready = self.loop.create_future()
        self.loop.add_reader(fd, ready.set_result, None)
        try:
            await ready
        finally:
            self.loop.remove_reader(fd)

    def _accept_pending(self, listener: socket.socket, limit: int | None) -> int | None:
        """Accept what waits in the backlog (at most `limit`, and within max_connections;
        everything when `limit` is None). None when accept() lacked file descriptors or memory:
        the connection stays in the backlog."""
        accepted = 0
        failure = None
        while limit is None or accepted < limit:
            if limit is not None and self.open_connections >= self._limits.max_connections:
                break
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                failure = str(exc)
                break
            accepted += 1
            task = self.loop.create_task(self._handshake(sock))
            self._handshaking[task] = self.loop.time()
            task.add_done_callback(self._handshake_done)
        if failure is not None:
            log.error("accept_failed", error=failure, action="retrying in a second")
            return None
        return accepted

    async def _handshake(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            await self.loop.connect_accepted_socket(
                self._new_connection,
                sock,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self._limits.header_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            # A port scan, a client that does not trust us, or one that never finishes the
            # handshake: the loop has closed the socket; nothing to answer.
            sock.close()
        except Exception:  # a bug: say so, and keep accepting
            log.exception("tls_handshake_failed")
            sock.close()

    def _handshake_done(self, task: asyncio.Task[None]) -> None:
        self._handshaking.pop(task, None)
        self.room.set()

    def _new_connection(self) -> BufferedReads:
        return BufferedReads(Connection(self, **self._handler_args), self._reads)

    def _evict(self) -> bool:
        """Make room for a new connection: close the one idle the longest, once idle for a
        second (a client that is about to write on a connection it just used or opened would
        lose that request; Go's client reuses its most recent one first), or else the oldest
        of those slow in their handshake or headers. False when every one is busy or quick."""
        slow_since = self.loop.time() - _SLOW
        idle = [c for c in self.connections if c.idle and c.idle_since < slow_since]
        for connection in sorted(idle, key=lambda c: c.idle_since):
            if connection.quiet:
                self._close(connection, "evicted")
                return True
        # Bytes waiting unread in the socket mean the client went on sending: not slow, only
        # not read yet by a busy loop (its request may be complete there).
        in_headers = [
            c
            for c in self.connections
            if c.in_headers and (c.request_started or 0.0) < slow_since and not _unread(c.transport)
        ]
        header = min(in_headers, key=lambda c: c.request_started or 0.0, default=None)
        handshake = min(self._handshaking.items(), key=lambda item: item[1], default=None)
        if handshake is not None and handshake[1] >= slow_since:
            handshake = None
        if header is not None and (
            handshake is None or (header.request_started or 0.0) <= handshake[1]
        ):
            self._close(header, "evicted")
            return True
        if handshake is not None:
            task = handshake[0]
            self._handshaking.pop(task, None)
            task.cancel()  # connect_accepted_socket closes the socket
            self._on_close("evicted")
            return True
        return False

    # --- timeouts -------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        every = min(1.0, self._limits.header_timeout / 4)
        while True:
            await asyncio.sleep(every)
            self._sweep(self.loop.time())

    def _sweep(self, now: float) -> None:
        """Close connections whose request headers are late: a request's first byte came more
        than header_timeout ago and its headers are still incomplete."""
        limit = self._limits.header_timeout
        for connection in list(self.connections):
            started = connection.request_started
            if connection.in_headers and started is not None and now - started > limit:
                self._close(connection, "header_timeout")

    def _close(self, connection: Connection, reason: CloseReason) -> None:
        self.connections.discard(connection)
        self.room.set()
        connection.force_close()
        self._on_close(reason)

    def _spawn(self, coroutine: Any, name: str | None) -> None:
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _unread(transport: asyncio.BaseTransport | None) -> int:
    """Bytes the kernel holds for this connection that the event loop has not read yet."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(raw, sys.byteorder, signed=True)


def _listen(port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket on every address, IPv6 and IPv4 where there is IPv6."""
    try:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(
                ("", port), family=socket.AF_INET6, backlog=backlog, dualstack_ipv6=True
            )
        else:  # pragma: no cover - hosts without IPv6
            sock = socket.create_server(("", port), backlog=backlog)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on port {port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
