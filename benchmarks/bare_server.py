#!/usr/bin/env python3
"""The comparison point: a bare aiohttp TLS handler that parses the review and answers a fixed
"allowed" response (the review's uid echoed). No validation, no mutation, no metrics, no logs.

It is what one aiohttp process on one core can do at best for this request shape, so the
webhook's throughput is reported as a fraction of it. Same TLS setup as the webhook (TLS 1.2+,
the certificate from `pod-identity-webhook certs --local`), keep-alive, no access log.

    python benchmarks/bare_server.py --port 8443 --tls-cert certs/tls.crt --tls-key certs/tls.key
    python benchmarks/bare_server.py ... --uvloop --orjson   # the webhook's own loop and JSON
    python benchmarks/bare_server.py ... --uvloop --orjson --middleware  # + a middleware like
                                                   # the webhook's `instrument`
    python benchmarks/bare_server.py ... --uvloop --orjson --low-level   # aiohttp.web.Server:
                                                   # no Application, router or middleware

GET /readyz answers "ok"; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Loads = Callable[[bytes], Any]
Dumps = Callable[[Any], bytes]


def codecs(*, orjson: bool) -> tuple[Loads, Dumps]:
    if orjson:
        import orjson as fast

        return fast.loads, fast.dumps

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    return json.loads, dumps


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def make_mutate(loads: Loads, dumps: Dumps) -> Handler:
    async def mutate(request: web.BaseRequest) -> web.Response:
        review = loads(await request.read())
        uid = review["request"]["uid"]
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
        return web.Response(body=dumps(answer), content_type="application/json")

    return mutate


async def readyz(_: web.BaseRequest) -> web.Response:
    return web.Response(text="ok")


@web.middleware
async def instrument(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What the webhook's middleware does around /mutate, without the metrics themselves."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = web.Response(status=exc.status, text=exc.reason)
    if request.path == "/mutate":
        transport = request.transport
        if transport is None or transport.is_closing():
            return web.Response(status=499)
    return response


def make_app(loads: Loads, dumps: Dumps, *, middleware: bool = False) -> web.Application:
    app = web.Application(
        client_max_size=4 * 1024 * 1024, middlewares=[instrument] if middleware else []
    )
    app.router.add_post("/mutate", make_mutate(loads, dumps))
    app.router.add_get("/readyz", readyz)
    return app


def make_low_level(loads: Loads, dumps: Dumps) -> Handler:
    """aiohttp's low-level server: one handler for every request, routed by hand."""
    mutate = make_mutate(loads, dumps)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/mutate" and request.method == "POST":
            return await mutate(request)
        if request.path == "/readyz":
            return await readyz(request)
        return web.Response(status=404)

    return handle


async def serve_low_level(handler: Handler, host: str, port: int, context: ssl.SSLContext) -> None:
    runner = web.ServerRunner(web.Server(handler), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description="bare aiohttp TLS admission handler")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--orjson", action="store_true", help="parse and render with orjson")
    parser.add_argument("--middleware", action="store_true", help="add an instrument middleware")
    parser.add_argument("--low-level", action="store_true", help="aiohttp.web.Server, no router")
    args = parser.parse_args()

    loads, dumps = codecs(orjson=args.orjson)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(args.tls_cert, args.tls_key)

    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    if args.low_level:
        with asyncio.Runner(loop_factory=(lambda: loop) if loop else None) as runner:
            runner.run(serve_low_level(make_low_level(loads, dumps), args.host, args.port, context))
        return 0
    web.run_app(
        make_app(loads, dumps, middleware=args.middleware),
        host=args.host,
        port=args.port,
        ssl_context=context,
        access_log=None,
        print=None,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
