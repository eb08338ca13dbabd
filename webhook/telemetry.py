"""What every server of the package (the webhook, the broker, the node agent) sets up the same
way: structlog, and the Prometheus registry.

Logs are JSON lines on stdout by default, a console format for humans. Everything, including
aiohttp's and the Kubernetes client's standard-library loggers, comes out through the same
renderer, so a container emits only JSON.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal, TextIO

import orjson
import structlog
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "LINES_LOST_SERIES",
    "LinesLostCollector",
    "Server",
    "configure_logs",
    "info",
    "lines_lost",
    "production_registry",
]

Server = Literal["webhook", "broker", "agent"]
"""The processes that log through this module."""

LINES_LOST_SERIES: dict[Server, str] = {
    "webhook": "pod_identity_webhook_log_lines_lost",
    "broker": "pod_identity_broker_log_lines_lost",
    "agent": "pod_identity_agent_log_lines_lost",
}
"""Each process's counter of lost lines, without the `_total` the exposition adds."""


class _JsonLine:
    """The JSON chain of structlog's own loggers in one processor: the level, the ISO UTC
    time stamp, the exception (only when there is one) and orjson, in that order, as
    add_log_level, TimeStamper, ExceptionRenderer and JSONRenderer would write them.

    One admission line per request: four processors and a datetime per line measured about
    half of the line's cost (benchmarks/micro.py). The date and time are formatted once a
    second, the microseconds per line."""

    def __init__(self, exceptions: structlog.processors.ExceptionRenderer) -> None:
        self._exceptions = exceptions
        self._second = -1
        self._prefix = ""

    def _timestamp(self) -> str:
        nanoseconds = time.time_ns()
        seconds = nanoseconds // 1_000_000_000
        if seconds != self._second:
            moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = seconds
        micros = nanoseconds // 1000 % 1_000_000
        # datetime.isoformat leaves out a zero fraction; so does this.
        return f"{self._prefix}.{micros:06d}Z" if micros else f"{self._prefix}Z"

    def __call__(self, logger: Any, method: str, event_dict: Any) -> bytes:
        event_dict = structlog.processors.add_log_level(logger, method, event_dict)
        event_dict["timestamp"] = self._timestamp()
        if "exc_info" in event_dict:
            event_dict = self._exceptions(logger, method, event_dict)
        return orjson.dumps(event_dict, default=str)

    def info_line(self, fields: dict[str, Any]) -> bytes:
        """What `__call__` renders for an info line without an exception, and its newline."""
        fields["level"] = "info"
        fields["timestamp"] = self._timestamp()
        return orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)


class _LineWriter:
    """structlog's BytesLogger for a file descriptor: each line goes out in one `write`
    system call, under a lock that every thread's lines share, with nothing buffered in
    between (a line logged is in the log before the answer it describes is sent).

    Half the cost of BytesLogger's write into the BufferedWriter and flush, per admission
    line (benchmarks/README.md).

    A log that cannot be written never fails the request that logs: a line the descriptor
    refuses (a reader gone, a disk full) is counted in `lost` and dropped, and the first
    such loss is reported on stderr. A descriptor left non-blocking by whoever shares it is
    waited on as a blocking one would be, up to WAIT_SECONDS for a line; once a line has been
    dropped that way, lines are not waited for again until one goes out whole, so a log that
    nobody reads costs one wait, not one per admission."""

    WAIT_SECONDS = 5.0

    def __init__(self, fd: int, stream: TextIO, series: str) -> None:
        self._fd = fd
        self._series = series  # named in the stderr notice
        self._stream = stream  # owns the descriptor: closed when collected
        self._lock = threading.Lock()
        self._writable = select.poll()
        self._writable.register(fd, select.POLLOUT)
        self._torn = False
        """The last line stopped part-way: the next one starts with a newline."""
        self._stalled = False
        """A line was dropped after its wait: no waiting until a line goes out whole."""
        self.lost = 0

    def line(self, data: bytes) -> None:
        """Write `data`, which ends with a newline."""
        with self._lock:
            prefix = 1 if self._torn else 0
            if prefix:
                data = b"\n" + data
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                self._lose(exc, written=0, prefix=prefix)
                return
            if written < len(data):  # a signal, or a pipe that took only part of it
                self._finish(data, written, prefix)
            elif self._torn or self._stalled:
                self._torn = self._stalled = False

    def _finish(self, data: bytes, written: int, prefix: int) -> None:
        view = memoryview(data)
        deadline = 0.0
        while written < len(data):
            try:
                step = os.write(self._fd, view[written:])
            except BlockingIOError:
                step = 0
            except OSError as exc:
                self._lose(exc, written=written, prefix=prefix)
                return
            if step:
                written += step
                continue
            now = time.monotonic()  # nothing taken: wait for room, as a blocking write does
            deadline = deadline or now + (0.0 if self._stalled else self.WAIT_SECONDS)
            if now >= deadline:
                self._stalled = True
                full = BlockingIOError(errno.EAGAIN, "the log took nothing for a while")
                self._lose(full, written=written, prefix=prefix)
                return
            self._writable.poll(max(1, int(1000 * (deadline - now))))
        self._torn = self._stalled = False

    def _lose(self, exc: OSError, *, written: int, prefix: int) -> None:
        if written > prefix:  # part of the line is in the log: the next one starts anew
            self._torn = True
        elif written and prefix:  # only the newline that ends the torn line went out
            self._torn = False
        self.lost += 1
        if self.lost == 1:
            notice = orjson.dumps(
                {
                    "event": "log_lines_lost",
                    "level": "error",
                    "error": f"{exc.__class__.__name__}: {exc.strerror or exc}",
                    "detail": f"lines the log refuses are dropped and counted in {self._series}",
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
            with contextlib.suppress(OSError):  # stderr may be the same broken pipe
                os.write(2, notice)

    def msg(self, message: bytes) -> None:
        self.line(message + b"\n")

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _LineHandler(logging.Handler):
    """The standard library's records (aiohttp's, the Kubernetes client's) through the same
    writer: one lock and one `write` per line for every logger, and the same loss counting."""

    def __init__(self, writer: _LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.line(self.format(record).encode("utf-8", "backslashreplace") + b"\n")
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


class _LineWriterFactory:
    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer

    def __call__(self, *_: Any) -> _LineWriter:
        return self._writer


_direct: tuple[_JsonLine, _LineWriter] | None = None
"""The JSON chain and the writer it writes with, when configure_logs set them up on a file
descriptor."""


def lines_lost() -> int:
    """Log lines dropped because the log's descriptor refused them (0 when logs go through
    structlog's own writers)."""
    return _direct[1].lost if _direct is not None else 0


class LinesLostCollector(Collector):
    """`lines_lost()` as a counter read at scrape time, under `server`'s own name. The
    webhook's lines are the record of its admissions, the broker's of the credentials it
    issued: their loss must be visible where the alerts look."""

    def __init__(self, server: Server) -> None:
        self._name = LINES_LOST_SERIES[server]

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            self._name,
            "Log lines dropped because the log (stdout) refused them: a reader gone, a disk "
            "full. The requests they describe were answered.",
            value=lines_lost(),
        )


def info(event: str, fields: dict[str, Any]) -> None:
    """`structlog.get_logger().info(event, **fields)`, for the line logged on every request.

    With the JSON chain configured the line is rendered and written here: the same bytes
    without structlog's dispatch, which re-packs the keyword arguments three times and copies
    the context (11.3 µs a line against 5.3, benchmarks/README.md). Whenever structlog is
    configured otherwise (the console format, a test capturing logs, which changes the
    processors in place) the line goes through structlog. `fields` is consumed."""
    processors = structlog.get_config()["processors"]
    if _direct is None or len(processors) != 1 or processors[0] is not _direct[0]:
        structlog.get_logger("webhook").info(event, **fields)
        return
    render, writer = _direct
    fields["event"] = event
    writer.line(render.info_line(fields))


def _descriptor(out: TextIO) -> int | None:
    """The file descriptor under a text stream, once what it buffered is written; None when
    there is none (a StringIO, a stream a test wraps)."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        return None
    try:
        out.flush()
        buffer.flush()
        fd = buffer.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return None
    return fd if isinstance(fd, int) else None


def configure_logs(
    *,
    fmt: str = "json",
    verbosity: int = 0,
    stream: TextIO | None = None,
    server: Server = "webhook",
) -> None:
    """Call once at start-up. `verbosity` follows klog's -v: 4 and above logs debug lines;
    `server` names the counter of lost lines that stderr points to."""
    global _direct  # noqa: PLW0603 - one stdout per process
    _direct = None  # until this call sets up the JSON chain on a descriptor again
    level = logging.DEBUG if verbosity >= 4 else logging.INFO
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    factory: Any = structlog.PrintLoggerFactory(out)
    writer: _LineWriter | None = None
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=False,
            exception_formatter=structlog.dev.plain_traceback,  # no locals here either
        )
        chain = [*shared, renderer]
    else:
        # Tracebacks as data, but never frame locals: they can hold request bodies and tokens.
        exceptions = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        shared.append(exceptions)
        renderer = structlog.processors.JSONRenderer()
        chain = [*shared, renderer]
        fd = _descriptor(out)
        if fd is not None:
            # One admission line per request: orjson straight to bytes costs a fraction of
            # the json module plus print, and a write of our own half of BytesLogger's
            # (measured with benchmarks/).
            writer = _LineWriter(fd, out, f"{LINES_LOST_SERIES[server]}_total")
            _direct = (_JsonLine(exceptions), writer)
            chain = [_direct[0]]
            factory = _LineWriterFactory(writer)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out) if writer is None else _LineHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level > logging.DEBUG else logging.DEBUG)


def production_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors, like Go's default one."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry
