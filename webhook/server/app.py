"""The thin aiohttp transport: routes, the /mutate handler, health, metrics and debug pages.

The handler knows HTTP; everything about admission goes through the pure `reviews` and
`mutation` modules. Errors in the webhook request itself are HTTP 4xx with a JSON body, so the
API server applies the webhook's failurePolicy instead of denying the Pod
(docs/compatibility.md, 2b); an unexpected exception is a logged 500. A client that goes away
is not an error of ours: it is logged (`client_aborted`) and counted, without a traceback.
Connection handling (limits, timeouts, `Connection: close` while stopping) is in
connections.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import StreamReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import telemetry
from webhook.admission.extensions import Extensions, Extras, extend
from webhook.admission.memo import DecisionMemo
from webhook.admission.mutation import Decision, Jitter, decide, random_jitter
from webhook.admission.notes import Note
from webhook.admission.reviews import AdmissionRequest, dumps, parse_review, respond
from webhook.admission.verdicts import Verdict, answer, verdict
from webhook.admission.wire import LookupPath
from webhook.certificates.serving import CertificateReloader
from webhook.config import Config
from webhook.errors import BadReview
from webhook.server.encodings import ACCEPTED, BodyError, coding, decode
from webhook.server.metrics import AbortPhase, Metrics
from webhook.sources.associations import with_association_role
from webhook.sources.store import Store

__all__ = ["HANDLER_ARGS", "MAX_BODY", "Webhook", "make_metrics_app", "make_webhook_app"]

MAX_BODY = 4 * 1024 * 1024
"""The API server limits request bodies to 3 MiB; a review wraps one Pod, so 4 MiB is ample.
The limit applies to the body as sent and, for a compressed body, to what it inflates to."""
KEEP_ALIVE_BODY = 32 * 1024
"""A larger body (reviews are a few KiB) gets its answer with `Connection: close`."""
HANDLER_ARGS = {"auto_decompress": False}
"""aiohttp's connection settings for the TLS app: bodies are decoded by `encodings`."""

log = structlog.get_logger("webhook")
_JSON = {"Content-Type": "application/json"}
"""The answer's header, given as is: cheaper than aiohttp parsing a `content_type` each time."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True, kw_only=True)
class Webhook:
    """Everything the handlers share, built once at start-up."""

    config: Config
    store: Store
    metrics: Metrics
    certificates: CertificateReloader | None = None
    jitter: Jitter = random_jitter
    extensions: Extensions = field(default_factory=Extensions)
    """The role policy and extension rules; replaced when the policy file changes."""
    ca_bundle_trusted: bool | None = None
    """Whether the registered caBundle trusts the served certificate; None: not checked."""
    stopped_tasks: set[str] = field(default_factory=set)
    """Background loops that died (certificate reload, file polls, caBundle watch)."""
    draining: bool = False
    """Stopping: /readyz says 503."""
    memo: DecisionMemo = field(init=False)
    """Decisions of identical Pods, reused while the identity sources answer the same."""

    def __post_init__(self) -> None:
        self.memo = DecisionMemo(self.config.mutation)
        self.metrics.watch_memo(self.memo)

    @property
    def ready(self) -> bool:
        certificates_loaded = self.certificates is None or self.certificates.current is not None
        return (
            certificates_loaded
            and self.store.ready
            and self.ca_bundle_trusted is not False
            and not self.stopped_tasks
            and not self.draining
        )


WEBHOOK = web.AppKey("webhook", Webhook)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ClientAborted(Exception):
    """The client closed its connection before its request was read or answered."""

    def __init__(self, phase: AbortPhase, error: str) -> None:
        super().__init__(error)
        self.phase = phase


def _aborted(hook: Webhook, request: web.Request, phase: AbortPhase, error: str) -> web.Response:
    hook.metrics.client_aborts_counter(phase)
    log.info("client_aborted", phase=phase, path=request.path, error=error)
    return web.Response(status=499)  # never sent: nobody is listening


@web.middleware
async def instrument(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Upstream's request metrics for /mutate, JSON errors, a logged 500 for bugs, and client
    aborts apart."""
    hook = request.app[WEBHOOK]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    except ClientAborted as exc:
        return _aborted(hook, request, exc.phase, str(exc))
    except Exception:
        log.exception("internal_error", path=request.path, method=request.method)
        response = _error(500, "internal error; see the webhook's log")
        if request.path == "/mutate":
            hook.metrics.internal_error()
    if request.path == "/mutate":
        transport = request.transport
        if transport is None or transport.is_closing():
            return _aborted(hook, request, "answer", "the connection closed before the answer")
        hook.metrics.observe_request(
            request.method, request.path, response.status, time.perf_counter() - started
        )
    return response


async def _decide(hook: Webhook, admission: AdmissionRequest) -> tuple[Decision, LookupPath]:
    """The decision and how the ServiceAccount was found: `cache`, `informer` or `api`
    (arrived while the request waited; docs/compatibility.md, 2c), or `missed`."""
    config = hook.config
    decision = _decide_now(hook, admission)
    if decision.reason != "service-account-not-found":
        return decision, "cache"
    arrived = None
    # Without a namespace no watch or live GET can deliver the ServiceAccount: answer at once.
    if config.grace_period > 0 and admission.namespace:
        arrived = await hook.store.wait_for(admission.namespace, decision.name, config.grace_period)
    if arrived is None:
        return decision, "missed"
    decision = _decide_now(hook, admission)
    how = "a live API lookup" if arrived == "api" else "the watch"
    late = Note(
        "service-account-late",
        f"ServiceAccount {decision.service_account} was not cached yet; found through {how}",
    )
    return dataclasses.replace(decision, notes=(late, *decision.notes)), arrived


def _decide_now(hook: Webhook, admission: AdmissionRequest) -> Decision:
    if hook.extensions.rules:
        # Rules are handed the decision itself: one they changed must not serve other Pods.
        return decide(
            admission.pod,
            namespace=admission.namespace,
            sources=hook.store,
            config=hook.config.mutation,
            jitter=hook.jitter,
        )
    return hook.memo.decide(
        admission.pod, namespace=admission.namespace, sources=hook.store, jitter=hook.jitter
    )


async def _extend(hook: Webhook, admission: AdmissionRequest, decision: Decision) -> Extras:
    extras = await extend(admission.pod, decision, hook.extensions, config=hook.config.mutation)
    for name, error in extras.rule_errors:
        log.error("rule_failed", rule=name, error=error, uid=admission.uid)
    return extras


def _log_admission(
    admission: AdmissionRequest,
    decision: Decision,
    judged: Verdict,
    lookup: LookupPath,
    seconds: float,
    extras: Extras | None,
) -> None:
    telemetry.info(
        "admission",
        {
            "uid": admission.uid,
            "namespace": admission.namespace,
            "pod": admission.pod_name,
            "service_account": decision.name,
            "outcome": judged.outcome,
            "reason": judged.reason,
            "denial": extras.denial if extras else None,
            "policy_violations": [v.rule for v in extras.violations] if extras else None,
            "method": decision.method,
            "role_source": decision.role_source,
            "lookup": lookup,
            "notes": [note.code for note in decision.notes] if decision.notes else None,
            "duration_ms": round(seconds * 1000, 3),
        },
    )


def _reject(hook: Webhook, status: int, message: str, started: float) -> web.Response:
    hook.metrics.reject(time.perf_counter() - started)
    log.warning("admission_rejected", status=status, error=message)
    return _error(status, message)


async def mutate(request: web.Request) -> web.Response:
    hook = request.app[WEBHOOK]
    started = time.perf_counter()
    if request.method != "POST":
        response = _error(405, f"use POST, not {request.method}")
        response.headers["Allow"] = "POST"
        return response
    if request.content_type != "application/json":
        shown = request.headers.get("Content-Type", "no Content-Type")
        return _reject(hook, 415, f"expected Content-Type application/json, got {shown}", started)
    raw = b""
    try:
        encoded = coding(request.headers.get("Content-Encoding"))
        raw = await _read_body(request, hook.config.limits.body_timeout)
        body = raw if encoded is None else decode(raw, encoded, MAX_BODY)
    except BodyError as exc:
        response = _reject(hook, exc.status, str(exc), started)
        if exc.status == 415:
            response.headers["Accept-Encoding"] = ACCEPTED
        elif exc.status in (408, 413) and not raw:
            # The rest of the body may still come: read and dropped, not inflated (connections.py),
            # and the connection is not kept.
            response.force_close()
    else:
        response = await _admit(hook, body, started)
    if len(raw) > KEEP_ALIVE_BODY:
        # The TLS layer's read buffer keeps the pages such a body touched for as long as the
        # connection lives; a new connection starts small.
        response.force_close()
    return response


async def _admit(hook: Webhook, body: bytes, started: float) -> web.Response:
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # also absurdly deep nesting
        return _reject(hook, 400, f"the body is not JSON: {exc}", started)
    try:
        admission = parse_review(review)
        decision, lookup = await _decide(hook, admission)
        if hook.store.association_roles:
            decision = with_association_role(decision, hook.store)
    except BadReview as exc:
        return _reject(hook, 400, str(exc), started)
    extras = await _extend(hook, admission, decision) if hook.extensions.active else None
    judged = verdict(decision, extras)
    said = hook.memo.answer(decision) if extras is None else answer(decision, extras)
    answered = dumps(respond(admission, said))
    seconds = time.perf_counter() - started
    hook.metrics.record(
        judged, method=decision.method, lookup=lookup, seconds=seconds, extras=extras
    )
    _log_admission(admission, decision, judged, lookup, seconds, extras)
    return web.Response(body=answered, headers=_JSON)


async def _read_body(request: web.Request, within: float) -> bytes:
    """The body as sent, at most MAX_BODY bytes. Raises BodyError (400, 408, 413) or
    ClientAborted. Read here rather than with request.read(), which keeps a copy on the request
    and so on the idle keep-alive connection until its next request."""
    if (request.content_length or 0) > MAX_BODY:  # said in the headers: not worth reading
        raise _too_large()
    content = request.content
    try:
        if content.is_eof():  # the usual case: the body came with the headers, all buffered
            body = content.read_nowait()
            if len(body) > MAX_BODY:
                raise _too_large()
            return body
        async with asyncio.timeout(within):
            return await _read_all(content)
    except TimeoutError:
        raise BodyError(408, f"the body did not arrive within {within:g} s") from None
    except web.RequestPayloadError as exc:  # a malformed chunked body, for instance
        raise BodyError(400, f"the body could not be read: {exc}") from None
    except OSError as exc:  # ConnectionResetError and friends: the client went away
        raise ClientAborted("body", str(exc) or type(exc).__name__) from None


async def _read_all(content: StreamReader) -> bytes:
    chunks = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> BodyError:
    return BodyError(413, f"the body is larger than {MAX_BODY} bytes")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    hook = request.app[WEBHOOK]
    if hook.ready:
        return web.Response(text="ok")
    if hook.draining:
        return web.Response(status=503, text="not ready: shutting down")
    missing = []
    if hook.certificates is not None and hook.certificates.current is None:
        missing.append("certificates not loaded")
    if not hook.store.service_accounts_synced:
        missing.append("ServiceAccounts not synced")
    if not hook.store.config_map_synced:
        missing.append("ConfigMap not synced")
    if not hook.store.associations_synced:
        missing.append("PodIdentityAssociations not synced")
    if hook.ca_bundle_trusted is False:
        missing.append(
            f"the caBundle of {hook.config.webhook_configuration} does not trust the served "
            "certificate"
        )
    missing.extend(f"background task {name} stopped" for name in sorted(hook.stopped_tasks))
    return web.Response(status=503, text="not ready: " + ", ".join(missing))


def make_webhook_app(hook: Webhook) -> web.Application:
    """The TLS app: /mutate, /healthz, /readyz."""
    app = web.Application(
        middlewares=[instrument], client_max_size=MAX_BODY, handler_args=HANDLER_ARGS
    )
    app[WEBHOOK] = hook
    app.router.add_route("*", "/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def metrics_page(request: web.Request) -> web.Response:
    body = generate_latest(request.app[WEBHOOK].metrics.registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


async def debug_cache(request: web.Request) -> web.Response:
    dump: dict[str, Any] = request.app[WEBHOOK].store.dump()
    # Keys arrive sorted and fields in upstream's order; Go's MarshalIndent keeps both.
    return web.Response(text=json.dumps(dump, indent=1))


async def debug_cache_clear(request: web.Request) -> web.Response:
    request.app[WEBHOOK].store.clear()
    log.warning("cache_cleared")
    return web.Response()


def make_metrics_app(hook: Webhook) -> web.Application:
    """The plain-HTTP app: /metrics, and the debug pages only when enabled."""
    app = web.Application()
    app[WEBHOOK] = hook
    app.router.add_get("/metrics", metrics_page)
    if hook.config.enable_debugging_handlers:
        app.router.add_route("*", "/debug/alpha/cache", debug_cache)
        app.router.add_route("*", "/debug/alpha/cache/clear", debug_cache_clear)
    return app
