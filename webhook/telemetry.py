"""What every server of the package (the webhook, the broker, the node agent) sets up the same
way: structlog, and the Prometheus registry.

Logs are JSON lines on stdout by default, a console format for humans. Everything, including
aiohttp's and the Kubernetes client's standard-library loggers, comes out through the same
renderer, so a container emits only JSON.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

__all__ = ["configure_logs", "info", "production_registry"]


class _JsonLine:
    """The JSON chain of structlog's own loggers in one processor: the level, the ISO UTC
    time stamp, the exception (only when there is one) and orjson, in that order, as
    add_log_level, TimeStamper, ExceptionRenderer and JSONRenderer would write them.

    One admission line per request: four processors and a datetime per line measured about
    half of the line's cost (benchmarks/micro.py). The date and time are formatted once a
    second, the microseconds per line."""

    def __init__(self, exceptions: structlog.processors.ExceptionRenderer) -> None:
        self._exceptions = exceptions
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self) -> str:
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        second, text = self._second
        if seconds != second:
            moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
            text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (seconds, text)
        micros = nanoseconds // 1000
        # datetime.isoformat leaves out a zero fraction; so does this.
        return f"{text}.{micros:06d}Z" if micros else f"{text}Z"

    def __call__(self, logger: Any, method: str, event_dict: Any) -> bytes:
        event_dict = structlog.processors.add_log_level(logger, method, event_dict)
        event_dict["timestamp"] = self._timestamp()
        if "exc_info" in event_dict:
            event_dict = self._exceptions(logger, method, event_dict)
        return orjson.dumps(event_dict, default=str)


_direct: tuple[_JsonLine, structlog.BytesLogger] | None = None
"""The JSON chain and the logger it writes with, when configure_logs set them up on bytes."""


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
    render, logger = _direct
    fields["event"] = event
    logger.msg(render(None, "info", fields))


def configure_logs(*, fmt: str = "json", verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Call once at start-up. `verbosity` follows klog's -v: 4 and above logs debug lines."""
    level = logging.DEBUG if verbosity >= 4 else logging.INFO
    out = stream or sys.stdout
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    factory: Any = structlog.PrintLoggerFactory(out)
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
        if hasattr(out, "buffer"):
            # One admission line per request: orjson straight to bytes costs a fraction of
            # the json module plus print (measured with benchmarks/).
            global _direct  # noqa: PLW0603 - one stdout per process
            _direct = (_JsonLine(exceptions), structlog.BytesLogger(out.buffer))
            chain = [_direct[0]]
            factory = structlog.BytesLoggerFactory(out.buffer)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
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
