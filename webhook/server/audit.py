"""--audit-pods wired to the running webhook: its store, its readiness and its metrics."""

from __future__ import annotations

import asyncio

from webhook.audit.auditor import Auditor
from webhook.kube import Api, client_configuration
from webhook.server.app import Webhook

__all__ = ["start_auditor"]


def start_auditor(hook: Webhook, loop: asyncio.AbstractEventLoop) -> Auditor:
    """Start the Pod watch with the webhook's credentials; `run` judges, `close` stops it."""
    metrics = hook.metrics
    auditor = Auditor(
        Api(client_configuration(hook.config)),
        hook.store,
        hook.config,
        loop,
        synced=lambda: hook.store.ready,
        serving=lambda: hook.ready,
        on_error=lambda source: metrics.api_errors.labels(source).inc(),
        on_action=metrics.audit_action,
    )
    metrics.watch_auditor(auditor)
    auditor.start()
    return auditor
