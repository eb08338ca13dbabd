"""The broker process: the EKS Auth endpoint over TLS, health, metrics, the association watch,
status writes and graceful shutdown.

    POST /clusters/{clusterName}/assume-role-for-pod-identity   EKS Auth (TLS, --port)
    GET  /healthz   the event loop answers
    GET  /readyz    200 once associations are synced and the broker's own AWS credentials
                    answered sts:GetCallerIdentity (checked every minute)
    GET  /metrics   on --metrics-port, plain HTTP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from webhook import kube
from webhook.admission.policy import Policy, PolicyError, parse_policy
from webhook.broker.config import BrokerConfig
from webhook.broker.service import Broker, Outcome, Settings
from webhook.broker.sts import StsClient, TokenBucket
from webhook.certificates.serving import CertificateReloader, server_context
from webhook.errors import (
    ApiError,
    ConfigError,
    EksAuthError,
    InternalServerException,
    InvalidRequestException,
    ServiceUnavailableException,
)
from webhook.podidentity.associations import AssociationIndex
from webhook.podidentity.session import cluster_arn
from webhook.podidentity.wire import error_body, parse_assume_request
from webhook.sources.files import PolledFile
from webhook.telemetry import LinesLostCollector, production_registry

__all__ = ["BrokerMetrics", "BrokerState", "make_broker_app", "serve_broker"]

log = structlog.get_logger("webhook.broker")
SHUTDOWN_TIMEOUT = 10.0
IDENTITY_INTERVAL = 60.0
API_THREADS = 32
MAX_BODY = 64 * 1024
ROUTE = "/clusters/{clusterName}/assume-role-for-pod-identity"


class BrokerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        registry.register(LinesLostCollector("broker"))
        self.requests = Counter(
            "pod_identity_broker_requests",
            "AssumeRoleForPodIdentity answers by outcome: success or the EKS Auth error type.",
            ["outcome"],
            registry=registry,
        )
        self.credentials = Counter(
            "pod_identity_broker_credentials",
            "Credentials handed out by source: cache, sts (a new STS call), shared (waited for "
            "an identical request's STS call).",
            ["source"],
            registry=registry,
        )
        self.sts_calls = Counter(
            "pod_identity_broker_sts_assume_role_calls",
            "sts:AssumeRole calls sent (a chained association sends two).",
            registry=registry,
        )
        self.duration = Histogram(
            "pod_identity_broker_request_duration_seconds",
            "Time to answer one AssumeRoleForPodIdentity request.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.associations = Gauge(
            "pod_identity_broker_associations", "Valid associations known.", registry=registry
        )
        self.cached = Gauge(
            "pod_identity_broker_cached_credentials", "Credentials in the cache.", registry=registry
        )
        self.policy_violations = Counter(
            "pod_identity_broker_policy_violations",
            "Role-policy violations by rule and mode (enforce refuses, audit reports).",
            ["rule", "mode"],
            registry=registry,
        )
        self.api_errors = Counter(
            "pod_identity_broker_api_errors",
            "Failed Kubernetes API calls by source.",
            ["source"],
            registry=registry,
        )
        self.identity_ok = Gauge(
            "pod_identity_broker_credentials_resolvable",
            "1 when the broker's own AWS credentials answered sts:GetCallerIdentity.",
            registry=registry,
        )


class ApiCalls:
    """kube.py's synchronous calls in threads; API failures become ServiceUnavailable."""

    def __init__(self, api: kube.Api, metrics: BrokerMetrics) -> None:
        self._api, self._metrics = api, metrics

    async def review(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(kube.token_review, self._api, token, list(audiences))
        except (ApiError, OSError) as exc:
            self._metrics.api_errors.labels("tokenreviews").inc()
            raise ServiceUnavailableException(f"TokenReview failed: {exc}") from None

    async def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(kube.get_pod, self._api, namespace, name)
        except (ApiError, OSError) as exc:
            self._metrics.api_errors.labels("pods").inc()
            raise ServiceUnavailableException(f"reading the Pod failed: {exc}") from None


@dataclasses.dataclass(slots=True)
class BrokerState:
    config: BrokerConfig
    broker: Broker
    metrics: BrokerMetrics
    identity_ok: bool = False
    policy: Policy | None = None
    status: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    """(namespace, name) → the status to write next; flushed by the status writer."""
    written: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.broker.index.synced and self.identity_ok

    def record(self, namespace: str, name: str, **fields: Any) -> None:
        self.status.setdefault((namespace, name), {}).update(fields)


STATE = web.AppKey("broker", BrokerState)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(exc: EksAuthError) -> web.Response:
    return web.json_response(
        error_body(exc.message), status=exc.status, headers={"x-amzn-ErrorType": exc.code}
    )


async def assume(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    outcome = Outcome()
    try:
        body = await request.read()
        parsed = parse_assume_request(request.match_info["clusterName"], body)
        answer = await state.broker.assume(
            parsed, request.headers.get("Authorization", ""), outcome
        )
    except EksAuthError as exc:
        state.metrics.requests.labels(exc.code).inc()
        association = outcome.association
        if association is not None:
            state.record(
                association.namespace,
                association.service_account,
                lastError=f"{exc.code}: {exc.message}"[:1000],
                lastErrorTime=_now(),
            )
        log.info("assume_refused", error=exc.code, message=exc.message)
        return _error(exc)
    except web.HTTPRequestEntityTooLarge:
        # The caller's fault, as the metric has always said: a 400, not a 500 that the
        # broker's error alert would count and an SDK would retry.
        state.metrics.requests.labels("InvalidRequestException").inc()
        return _error(InvalidRequestException(f"the body is larger than {MAX_BODY} bytes"))
    finally:
        state.metrics.duration.observe(time.perf_counter() - started)
    state.metrics.requests.labels("success").inc()
    state.metrics.credentials.labels(outcome.source).inc()
    for rule, mode in outcome.violations:
        state.metrics.policy_violations.labels(rule, mode).inc()
    if outcome.association is not None:
        association = outcome.association
        state.record(
            association.namespace,
            association.service_account,
            lastAssumeTime=_now(),
            lastAssumedRole=association.effective_role,
        )
    log.info(
        "assumed",
        namespace=answer.namespace,
        service_account=answer.service_account,
        role=answer.assumed_role_arn,
        source=outcome.source,
        expiration=int(answer.credentials.expiration),
        policy_violations=[rule for rule, _ in outcome.violations] or None,
    )
    return web.Response(body=orjson.dumps(answer.to_wire()), content_type="application/json")


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Any bug is a logged InternalServerException, never a stack trace to the caller."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return _error_for(404, "ResourceNotFoundException", f"no route {request.path}")
        if exc.status == 405:
            return _error_for(405, "InvalidRequestException", f"use POST, not {request.method}")
        raise
    except Exception:
        log.exception("internal_error", path=request.path)
        request.app[STATE].metrics.requests.labels("InternalServerException").inc()
        return _error(InternalServerException("internal error; see the broker's log"))
    return response


def _error_for(status: int, code: str, message: str) -> web.Response:
    return web.json_response(error_body(message), status=status, headers={"x-amzn-ErrorType": code})


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.ready:
        return web.Response(text="ok")
    missing = []
    if not state.broker.index.synced:
        missing.append("associations not synced")
    if not state.identity_ok:
        missing.append("the broker's AWS credentials are not resolvable")
    return web.Response(status=503, text="not ready: " + ", ".join(missing))


def make_broker_app(state: BrokerState) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[STATE] = state
    app.router.add_post(ROUTE, assume)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def metrics_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.metrics.associations.set(len(state.broker.index))
    state.metrics.cached.set(state.broker.cache_size)
    response = web.Response(body=generate_latest(state.metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def make_metrics_app(state: BrokerState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", metrics_page)
    return app


# -- background work ------------------------------------------------------------------------


async def _check_identity(state: BrokerState, sts: StsClient) -> None:
    """GetCallerIdentity every minute: readiness, and the account of the default cluster ARN."""
    while True:
        try:
            account, arn = await sts.caller_identity()
        except EksAuthError as exc:
            log.error("credentials_not_resolvable", error=exc.message)  # noqa: TRY400
            state.identity_ok = False
        else:
            if not state.identity_ok:
                log.info("credentials_resolvable", identity=arn)
            if not state.broker.settings.cluster_arn:
                partition = arn.split(":")[1] if arn.count(":") >= 5 else "aws"
                settings = dataclasses.replace(
                    state.broker.settings,
                    cluster_arn=cluster_arn(
                        partition, sts.region, account, state.config.cluster_name
                    ),
                )
                state.broker.settings = settings
            state.identity_ok = True
        state.metrics.identity_ok.set(1 if state.identity_ok else 0)
        await asyncio.sleep(IDENTITY_INTERVAL if state.identity_ok else 5.0)


async def _write_status(state: BrokerState, api: kube.Api) -> None:
    """Flush recorded status, at most once per association per --status-interval."""
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for key in list(state.status):
            if now - state.written.get(key, -1e9) < state.config.status_interval:
                continue
            fields = state.status.pop(key)
            association = state.broker.index.get(*key)
            if association is not None:
                fields.setdefault("associationId", association.association_id)
                fields.setdefault("observedGeneration", association.generation)
                if association.target_role_arn:
                    fields.setdefault("externalId", association.external_id)
            state.written[key] = now
            try:
                await asyncio.to_thread(kube.patch_association_status, api, *key, fields)
            except (ApiError, OSError) as exc:
                state.metrics.api_errors.labels("status").inc()
                log.warning("status_write_failed", association="/".join(key), error=str(exc))
        state.broker.forget_expired()


def _watch(state: BrokerState, api: kube.Api, stop: threading.Event) -> None:
    index = state.broker.index

    def refused(problem: str | None, obj: Any) -> None:
        if problem is None:
            return
        log.warning("association_invalid", problem=problem)
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(metadata, dict):
            state.record(
                str(metadata.get("namespace")),
                str(metadata.get("name")),
                lastError=f"invalid: {problem}"[:1000],
                lastErrorTime=_now(),
            )

    def listed(items: list[dict[str, Any]]) -> None:
        index.replace([])
        for obj in items:
            refused(index.put(obj), obj)
        log.info("associations_synced", associations=len(index), invalid=len(index.invalid))

    def changed(kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            index.delete(obj)
        else:
            refused(index.put(obj), obj)

    kube.association_reflector(
        api,
        asyncio.get_running_loop(),
        stop,
        on_list=listed,
        on_event=changed,
        watch_seconds=max(1, int(state.config.resync_period)),
        on_error=lambda source: state.metrics.api_errors.labels(source).inc(),
    )


def _policy_file(state: BrokerState) -> PolledFile | None:
    path = state.config.policy_file
    if not path:
        return None

    def apply(text: str | None) -> None:
        if text is None:
            raise ValueError(f"{path} does not exist")
        state.policy = parse_policy(text)
        log.info("policy_loaded", rules=[rule.name for rule in state.policy.rules])

    def failed(error: Exception) -> None:
        log.error("policy_reload_failed", error=str(error), action="kept the previous policy")

    file = PolledFile(path, apply, on_error=failed)
    try:
        file.load()
    except (OSError, ValueError, PolicyError) as exc:
        raise ConfigError(f"--policy {path}: {exc}") from None
    return file


async def serve_broker(config: BrokerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status. ConfigError on bad start-up input."""
    context = server_context(config.tls_min_version, ())
    certificates = CertificateReloader(context, config.tls_cert, config.tls_key)
    certificates.load()
    metrics = BrokerMetrics(production_registry())
    api = kube.connect(config.kubeconfig, config.kube_api, connections=API_THREADS)
    # TokenReviews and Pod reads run in threads: enough of them that a burst of new Pods is
    # not queued behind a handful (the default executor has min(32, CPUs + 4)).
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="kube")
    )
    sts = StsClient(region=config.region, endpoint=config.sts_endpoint)
    settings = Settings(
        cluster_name=config.cluster_name,
        cluster_arn=config.cluster_arn,
        audience=config.audience,
        agent_audience=config.agent_audience,
        agent_service_accounts=frozenset(config.agent_service_accounts),
        require_agent_token=config.require_agent_token,
        session_duration=config.session_duration,
        refresh_margin=config.refresh_margin,
    )
    index = AssociationIndex()
    state = BrokerState(config, None, metrics)  # type: ignore[arg-type]
    counted = _CountingSts(sts, metrics)
    state.broker = Broker(
        settings,
        index,
        ApiCalls(api, metrics),
        counted,
        TokenBucket(config.sts_qps, config.sts_burst, config.sts_wait),
        policy=lambda: state.policy,
    )
    policy_file = _policy_file(state)
    stop = threading.Event()
    _watch(state, api, stop)
    tasks = [
        asyncio.create_task(certificates.run()),
        asyncio.create_task(_check_identity(state, sts)),
        asyncio.create_task(_write_status(state, api)),
    ]
    if policy_file is not None:
        tasks.append(asyncio.create_task(policy_file.run()))
    runners = [
        web.AppRunner(make_broker_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT),
        web.AppRunner(make_metrics_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT),
    ]
    done = asyncio.Event()
    _signals(done)
    try:
        for runner in runners:
            await runner.setup()
        await web.TCPSite(runners[0], port=config.port, ssl_context=context).start()
        await web.TCPSite(runners[1], port=config.metrics_port).start()
        log.info(
            "started",
            port=config.port,
            metrics_port=config.metrics_port,
            cluster=config.cluster_name,
            require_agent_token=config.require_agent_token,
            policy=config.policy_file or None,
        )
        await done.wait()
        log.info("shutting_down", timeout_seconds=SHUTDOWN_TIMEOUT)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners:
            await runner.cleanup()
    log.info("stopped")
    return 0


class _CountingSts:
    def __init__(self, sts: StsClient, metrics: BrokerMetrics) -> None:
        self._sts, self._metrics = sts, metrics

    async def assume(self, calls: list[Any]) -> Any:
        self._metrics.sts_calls.inc(len(calls))
        return await self._sts.assume(calls)


def _signals(done: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if done.is_set():
            log.warning("second_signal", signal=name, action="exiting now")
            os._exit(1)
        log.info("signal", signal=name)
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)


def read_token(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()
