#!/usr/bin/env python3
"""Run the real webhook with benchmark-only monkeypatches, to measure what a change would buy
without editing webhook/. Nothing here is meant for production.

    python benchmarks/webhook_variant.py VARIANTS -- [webhook flags...]

VARIANTS is a '+'-separated list (or 'none'):

  uvloop     run the server's asyncio.run() on uvloop (needs uvloop importable)
  orjson     orjson for the request parse, the response, the patch and the JSON log renderer
             (needs orjson importable)
  nolog      drop the per-admission "admission" log line (other lines stay)
  nometrics  no-op Prometheus/upstream series on the /mutate path
  gcfreeze   gc.collect() + gc.freeze() once everything is imported, so the collector's older
             generations stop rescanning the start-up objects (aiohttp, kubernetes, ...)

uvloop and orjson are not dependencies of the project: point PYTHONPATH at a directory where
they are installed, e.g. `pip install --target /tmp/bench-extra uvloop orjson`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

KNOWN = ("uvloop", "orjson", "nolog", "nometrics", "gcfreeze")


class _Null:
    """Stands in for a prometheus_client metric: labels() returns itself, the rest do nothing."""

    def labels(self, *_: Any, **__: Any) -> _Null:
        return self

    def inc(self, *_: Any, **__: Any) -> None:
        pass

    def observe(self, *_: Any, **__: Any) -> None:
        pass

    def set(self, *_: Any, **__: Any) -> None:
        pass


def _uvloop() -> None:
    import uvloop

    import webhook.cli

    class _Asyncio:  # webhook.cli calls asyncio.run(serve(config))
        def __getattr__(self, name: str) -> Any:
            import asyncio

            return getattr(asyncio, name)

        @staticmethod
        def run(coro: Any) -> Any:
            return uvloop.run(coro)

    webhook.cli.asyncio = _Asyncio()  # type: ignore[assignment]


def _orjson() -> None:
    import orjson
    import structlog

    import webhook.admission.reviews
    import webhook.server.app

    class _Json:
        loads = staticmethod(orjson.loads)

        @staticmethod
        def dumps(value: Any, **_: Any) -> str:
            return orjson.dumps(value).decode()

    webhook.app.json = _Json()  # type: ignore[assignment]
    webhook.reviews.json = _Json()  # type: ignore[assignment]

    def serializer(value: Any, **kw: Any) -> str:
        return orjson.dumps(value, default=kw.get("default")).decode()

    structlog.processors.JSONRenderer = functools.partial(  # type: ignore[misc]
        structlog.processors.JSONRenderer, serializer=serializer
    )


def _nolog() -> None:
    import webhook.server.app

    webhook.app._log_admission = lambda *_, **__: None  # type: ignore[assignment]  # noqa: SLF001


def _nometrics() -> None:
    import webhook.server.lifecycle
    from webhook.server.metrics import Metrics

    class QuietMetrics(Metrics):
        def __init__(self, registry: Any) -> None:
            super().__init__(registry)
            self.admissions = _Null()  # type: ignore[assignment]
            self.lookups = _Null()  # type: ignore[assignment]
            self.admission_duration = _Null()  # type: ignore[assignment]

        def observe_request(self, *_: Any) -> None:
            pass

        def count_pod(self, *_: Any) -> None:
            pass

    webhook.server.Metrics = QuietMetrics  # type: ignore[misc]


def _gcfreeze() -> None:
    import gc

    import webhook.cli  # noqa: F401 - import everything the server uses first

    gc.collect()
    gc.freeze()


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[1] != "--":
        sys.exit(__doc__)
    variants = [] if argv[0] == "none" else argv[0].split("+")
    unknown = [v for v in variants if v not in KNOWN]
    if unknown:
        sys.exit(f"webhook_variant: unknown variant(s) {unknown}; known: {', '.join(KNOWN)}")
    for variant in variants:
        globals()[f"_{variant}"]()
    from webhook.cli import main as webhook_main

    webhook_main(argv[2:])


if __name__ == "__main__":
    main()
