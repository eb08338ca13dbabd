#!/usr/bin/env python3
"""The comparison point: a bare aiohttp TLS handler that parses the review and answers a fixed
"allowed" response (the review's uid echoed). No validation, no mutation, no metrics, no logs.

It is what one aiohttp process on one core can do at best for this request shape, so the
webhook's throughput is reported as a fraction of it. Same TLS setup as the webhook (TLS 1.2+,
the certificate from `pod-identity-webhook certs --local`), keep-alive, no access log.

    python benchmarks/bare_server.py --port 8443 --tls-cert certs/tls.crt --tls-key certs/tls.key
    python benchmarks/bare_server.py ... --uvloop --orjson   # the webhook's own loop and JSON

GET /readyz answers "ok"; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections.abc import Callable
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


def make_app(loads: Loads, dumps: Dumps) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        review = loads(await request.read())
        uid = review["request"]["uid"]
        answer = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
        return web.Response(body=dumps(answer), content_type="application/json")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/readyz", readyz)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description="bare aiohttp TLS admission handler")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--orjson", action="store_true", help="parse and render with orjson")
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
    web.run_app(
        make_app(loads, dumps),
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
