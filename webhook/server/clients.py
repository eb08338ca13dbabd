"""--client-ca-file: who may call the webhook (mTLS).

The TLS handshake already refuses a client without a certificate signed by the client CAs
(`certificates.serving`). What a handshake cannot check is the name: with
`--client-allowed-names` a verified certificate must also carry one of them, or every request
on that connection gets 403. Probes cannot present a client certificate, so `/healthz` and
`/readyz` are then also served on the plain metrics port for the kubelet.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from webhook.certificates.serving import client_allowed, client_names
from webhook.config import Config
from webhook.server.app import Handler, healthz, readyz

__all__ = ["require_client_certificates"]

log = structlog.get_logger("webhook")


def _allow_names(allowed: Sequence[str]) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        if client_allowed(peercert, allowed):
            return await handler(request)
        names = client_names(peercert) if peercert else []
        log.warning("client_refused", path=request.path, names=names, allowed=list(allowed))
        return web.json_response(
            {"error": f"client certificate names {names} are not allowed"}, status=403
        )

    return check


def require_client_certificates(
    webhook_app: web.Application, metrics_app: web.Application, config: Config
) -> None:
    """Wire --client-allowed-names and the probe endpoints into the (not yet started) apps."""
    if not config.client_ca_file:
        return
    if config.client_allowed_names:
        webhook_app.middlewares.insert(0, _allow_names(config.client_allowed_names))
    metrics_app.router.add_get("/healthz", healthz)
    metrics_app.router.add_get("/readyz", readyz)
