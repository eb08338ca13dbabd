"""What every server of the package (the webhook, the broker, the node agent) sets up the same
way: structlog, and the Prometheus registry.

Logs are JSON lines on stdout by default, a console format for humans. Everything, including
aiohttp's and the Kubernetes client's standard-library loggers, comes out through the same
renderer, so a container emits only JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry

__all__ = ["configure_logs", "production_registry"]


def _orjson(value: Any, **_: Any) -> bytes:
    return orjson.dumps(value, default=str)


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
    else:
        # Tracebacks as data, but never frame locals: they can hold request bodies and tokens.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    fast = renderer
    if fmt != "console" and hasattr(out, "buffer"):
        # One admission line per request: orjson straight to bytes costs a fraction of the
        # json module plus print (measured with benchmarks/).
        fast = structlog.processors.JSONRenderer(serializer=_orjson)
        factory = structlog.BytesLoggerFactory(out.buffer)
    structlog.configure(
        processors=[*shared, fast],
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
