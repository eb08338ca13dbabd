#!/usr/bin/env python3
"""Run the real webhook with benchmark-only monkeypatches, to measure what a change would buy
without editing webhook/. Nothing here is meant for production.

    python benchmarks/webhook_variant.py VARIANTS -- [webhook flags...]

VARIANTS is a '+'-separated list (or 'none'):

  nolog      drop the per-admission "admission" log line (other lines stay)
  nometrics  no Prometheus or upstream series on the /mutate path
  gcfreeze   gc.collect() + gc.freeze() once everything is imported, so the collector's older
             generations stop rescanning the start-up objects (aiohttp, kubernetes, ...)
  gcstats    the cyclic garbage collector's collections and CPU time per generation, printed
             to stderr at exit
  norelease  never hand back the TLS read buffers' pages (webhook/server/tlsbuffers.py)
  lowlevel   the TLS port on aiohttp's low-level `web.Server` (no Application, router or
             middleware chain): one handler routes /mutate, /healthz and /readyz by hand and
             calls the webhook's own `instrument` and handlers (no client-name check)
  stages     timers (perf_counter_ns) around the calls the /mutate handler makes, medians
             printed to stderr at exit: what each stage costs in the server, cold caches and
             all (each timer adds about half a microsecond)
  fixed      /mutate answers what benchmarks/bare_server.py answers (the review's uid, allowed,
             no patch) behind the webhook's own site, app and middleware: the transport's
             ceiling in place; with nolog (its checks expect admission lines otherwise)

(The uvloop and orjson variants measured in benchmarks/README.md are gone: the webhook runs on
both now.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _nolog() -> None:
    import webhook.server.app

    def quiet(*_: object, **__: object) -> None:
        pass

    webhook.server.app._log_admission = quiet  # noqa: SLF001


def _nometrics() -> None:
    import webhook.server.lifecycle
    from webhook.server.metrics import Metrics

    class QuietMetrics(Metrics):
        def record(self, *_: object, **__: object) -> None:
            pass

        def observe_request(self, *_: object) -> None:
            pass

    webhook.server.lifecycle.Metrics = QuietMetrics  # type: ignore[attr-defined]


def _norelease() -> None:
    import webhook.server.tlsbuffers

    webhook.server.tlsbuffers._native = None  # noqa: SLF001 - what it does where ctypes fails


def _gcstats() -> None:
    import atexit
    import gc
    import time

    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent[info["generation"]] += time.process_time() - started[0]
            runs[info["generation"]] += 1

    def report() -> None:
        for generation in range(3):
            print(
                f"gc generation {generation}: {runs[generation]} collections, "
                f"{spent[generation] * 1e3:.1f} ms of CPU",
                file=sys.stderr,
                flush=True,
            )

    gc.callbacks.append(timed)
    atexit.register(report)


def _gcfreeze() -> None:
    import gc

    import webhook.cli  # noqa: F401 - import everything the server uses first

    gc.collect()
    gc.freeze()


def _lowlevel() -> None:
    import asyncio
    import contextlib
    import ssl

    from aiohttp import web

    from webhook.server import app as hooks
    from webhook.server import lifecycle
    from webhook.server.connections import GuardedSite

    async def listen_tls(
        stack: contextlib.AsyncExitStack,
        hook: hooks.Webhook,
        app: web.Application,
        context: ssl.SSLContext,
    ) -> GuardedSite:
        class HookRequest(web.BaseRequest):
            # The handlers find the hook through `request.app`, as on the Application path.
            @property
            def app(self) -> web.Application:
                return app

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
            loop = asyncio.get_running_loop()
            return HookRequest(message, payload, protocol, writer, task, loop)

        async def not_found(_: web.Request) -> web.StreamResponse:
            raise web.HTTPNotFound

        routes = {"/mutate": hooks.mutate, "/healthz": hooks.healthz, "/readyz": hooks.readyz}

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await hooks.instrument(request, routes.get(request.path, not_found))  # type: ignore[arg-type]

        server = web.Server(handle, request_factory=make_request, **hooks.HANDLER_ARGS)  # type: ignore[arg-type]
        runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = GuardedSite(
            runner,
            hook.config.port,
            context,
            hook.config.limits,
            handler_args=hooks.HANDLER_ARGS,
            on_close=hook.metrics.connection_closed,
        )
        await site.start()
        hook.metrics.open_connections.set_function(lambda: site.open_connections)
        return site

    lifecycle._listen_tls = listen_tls  # noqa: SLF001


def _fixed() -> None:
    import orjson
    from aiohttp import web

    from webhook.server import app as hooks

    async def mutate(request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    hooks.mutate = mutate


def _stages() -> None:
    import atexit
    import statistics
    import time

    import orjson

    from webhook import telemetry
    from webhook.admission.memo import DecisionMemo
    from webhook.server import app
    from webhook.server.metrics import Metrics

    timings: dict[str, list[int]] = {}
    clock = time.perf_counter_ns

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        spent = timings.setdefault(name, [])

        def run(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent.append(clock() - started)

        return run

    def timed_async(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        spent = timings.setdefault(name, [])

        async def run(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return await function(*args, **kwargs)
            finally:
                spent.append(clock() - started)

        return run

    class Json:  # app.py's `orjson`, with the decode timed
        loads = staticmethod(timed("orjson.loads", orjson.loads))
        dumps = orjson.dumps
        JSONDecodeError = orjson.JSONDecodeError

    app.orjson = Json  # type: ignore[attr-defined,assignment]
    for name in ("parse_review", "verdict", "answer", "respond", "dumps"):
        setattr(app, name, timed(name, getattr(app, name)))
    app._read_body = timed_async("_read_body", app._read_body)  # noqa: SLF001
    app._admit = timed_async("_admit (all of it)", app._admit)  # noqa: SLF001
    app.mutate = timed_async("mutate (all of it)", app.mutate)
    telemetry.info = timed("telemetry.info", telemetry.info)
    DecisionMemo.decide = timed("DecisionMemo.decide", DecisionMemo.decide)  # type: ignore[method-assign]
    DecisionMemo.answer = timed("DecisionMemo.answer", DecisionMemo.answer)  # type: ignore[method-assign]
    Metrics.record = timed("Metrics.record", Metrics.record)  # type: ignore[method-assign]
    Metrics.observe_request = timed("Metrics.observe_request", Metrics.observe_request)  # type: ignore[method-assign]

    def report() -> None:
        print(
            "stage timings in the server, µs (the first fifth left out as warm-up):",
            file=sys.stderr,
        )
        for name, spent in timings.items():
            kept = spent[len(spent) // 5 :]
            if kept:
                print(
                    f"  {name:<24} n={len(kept):>7}  median {statistics.median(kept) / 1e3:6.1f}"
                    f"  mean {statistics.fmean(kept) / 1e3:6.1f}",
                    file=sys.stderr,
                )

    atexit.register(report)


VARIANTS: dict[str, Callable[[], None]] = {
    "stages": _stages,
    "fixed": _fixed,
    "lowlevel": _lowlevel,
    "nolog": _nolog,
    "nometrics": _nometrics,
    "gcfreeze": _gcfreeze,
    "norelease": _norelease,
    "gcstats": _gcstats,
}


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[1] != "--":
        sys.exit(__doc__)
    variants = [] if argv[0] == "none" else argv[0].split("+")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"webhook_variant: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    for variant in variants:
        VARIANTS[variant]()
    from webhook.cli import main as webhook_main

    webhook_main(argv[2:])


if __name__ == "__main__":
    main()
