"""The node agent process: /v1/credentials on the link-local addresses, the broker client,
the cache, health, metrics and graceful shutdown.

Cache rule: a credential is served from the cache only to a token the agent has already seen
the broker accept for that Pod UID; a new token (the kubelet rotates them) goes to the broker
first, which answers from its own cache. When the broker cannot be reached, a token already
accepted keeps getting its cached credential until that credential expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from webhook.agent.config import AgentConfig, Listen
from webhook.errors import (
    EKS_AUTH_ERRORS,
    ConfigError,
    EksAuthError,
    InternalServerException,
    InvalidParameterException,
    InvalidRequestException,
    ServiceUnavailableException,
)
from webhook.podidentity.session import needs_refresh
from webhook.podidentity.tokens import pod_uid_claim, unverified_claims
from webhook.podidentity.wire import (
    AssumedRole,
    check_token_shape,
    parse_assume_response,
    sdk_credentials,
)
from webhook.telemetry import LinesLostCollector, production_registry

__all__ = ["Agent", "AgentMetrics", "BrokerClient", "make_agent_app", "serve_agent"]

log = structlog.get_logger("webhook.agent")
SHUTDOWN_TIMEOUT = 10.0
STALE_FLOOR = 60.0  # never hand out a credential with less than a minute left
# What the SDKs are told for each EKS Auth error (they only need "not 200"; these help people).
HTTP_STATUS = {
    "InvalidTokenException": 401,
    "ExpiredTokenException": 401,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "InvalidParameterException": 400,
    "InvalidRequestException": 400,
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
}


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        registry.register(LinesLostCollector("agent"))
        self.requests = Counter(
            "pod_identity_agent_requests",
            "/v1/credentials answers by outcome: success, host_refused, or the EKS Auth error.",
            ["outcome"],
            registry=registry,
        )
        self.credentials = Counter(
            "pod_identity_agent_credentials",
            "Credentials served by source: cache, broker, shared (an identical request's "
            "broker call), stale (cached, while the broker could not be reached).",
            ["source"],
            registry=registry,
        )
        self.broker_calls = Counter(
            "pod_identity_agent_broker_calls",
            "Calls to the broker by result: success or the EKS Auth error type.",
            ["result"],
            registry=registry,
        )
        self.cached = Gauge(
            "pod_identity_agent_cached_credentials",
            "Pods with cached credentials.",
            registry=registry,
        )


class BrokerClient:
    """AssumeRoleForPodIdentity over TLS, authenticated with the agent's own token."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._url = (
            f"{config.broker_url}/clusters/{config.cluster_name}/assume-role-for-pod-identity"
        )
        context = ssl.create_default_context(cafile=config.broker_ca or None)
        self._session: aiohttp.ClientSession | None = None
        self._context = context
        self._token: tuple[float, str] = (-1.0, "")

    def _session_for(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._context, limit=64)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Per socket operation, not in total: under a burst, requests wait for one of
                # the pooled connections, and that wait is not the broker being slow.
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._config.broker_timeout,
                    sock_read=self._config.broker_timeout,
                ),
            )
        return self._session

    def _own_token(self) -> str:
        """The agent's projected token, re-read when the kubelet rotates it."""
        path = Path(self._config.token_file)
        try:
            stamp = path.stat().st_mtime
            if stamp != self._token[0]:
                self._token = (stamp, path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ServiceUnavailableException(
                f"the agent's own token is unreadable: {exc}"
            ) from None
        return self._token[1]

    async def assume(self, token: str) -> AssumedRole:
        body = {"token": token}
        if self._config.node_name:
            body["eksNodeName"] = self._config.node_name
        headers = {"Authorization": f"Bearer {self._own_token()}"}
        try:
            async with self._session_for().post(self._url, json=body, headers=headers) as answer:
                data = await answer.read()
                code = answer.headers.get("x-amzn-ErrorType", "")
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServiceUnavailableException(
                f"the broker cannot be reached: {type(exc).__name__}"
            ) from None
        try:
            document = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            document = {}
        if status != 200:
            message = document.get("message") if isinstance(document, dict) else None
            error = EKS_AUTH_ERRORS.get(code.split(":")[0], InternalServerException)
            raise error(str(message or f"the broker answered HTTP {status}"))
        return parse_assume_response(document)

    async def healthy(self) -> bool:
        try:
            async with self._session_for().get(f"{self._config.broker_url}/healthz") as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(slots=True)
class _Seen:
    pod_uid: str
    token_expiration: float


class Agent:
    """The cache and the request logic, behind the HTTP edge."""

    def __init__(
        self,
        broker: Any,
        *,
        refresh_margin: float,
        clock: Callable[[], float] = time.time,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._broker = broker
        self._margin, self._clock = refresh_margin, clock
        self.metrics = metrics or AgentMetrics(CollectorRegistry())
        self._seen: dict[str, _Seen] = {}
        self._credentials: dict[str, AssumedRole] = {}
        self._in_flight: dict[str, asyncio.Future[AssumedRole]] = {}

    @property
    def cache_size(self) -> int:
        return len(self._credentials)

    async def credentials(self, token: str) -> AssumedRole:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        seen = self._seen.get(digest)
        cached = self._credentials.get(seen.pod_uid) if seen is not None else None
        if seen is not None and seen.token_expiration <= now:
            del self._seen[digest]  # an expired token must go to the broker (and be refused)
            seen = cached = None
        if cached is not None and not needs_refresh(
            cached.credentials.expiration, now, self._margin
        ):
            self.metrics.credentials.labels("cache").inc()
            return cached
        running = self._in_flight.get(digest)
        if running is not None:
            self.metrics.credentials.labels("shared").inc()
            return await asyncio.shield(running)
        future: asyncio.Future[AssumedRole] = asyncio.get_running_loop().create_future()
        self._in_flight[digest] = future
        try:
            role: AssumedRole = await self._broker.assume(token)
        except EksAuthError as exc:
            self.metrics.broker_calls.labels(exc.code).inc()
            usable = cached is not None and cached.credentials.expiration - now > STALE_FLOOR
            if isinstance(exc, ServiceUnavailableException | InternalServerException) and usable:
                assert cached is not None  # noqa: S101 - narrowed by `usable`
                log.warning("broker_unavailable_serving_cached", error=exc.message)
                self.metrics.credentials.labels("stale").inc()
                future.set_result(cached)
                return cached
            if not isinstance(exc, ServiceUnavailableException | InternalServerException):
                self._seen.pop(digest, None)  # refused: this token is no longer trusted
            future.set_exception(exc)
            future.exception()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            self.metrics.broker_calls.labels("success").inc()
            self.metrics.credentials.labels("broker").inc()
            claims = unverified_claims(token)  # the broker just accepted this token
            uid = pod_uid_claim(claims) or digest
            expiration = claims.get("exp")
            self._seen[digest] = _Seen(
                uid, float(expiration) if isinstance(expiration, int | float) else now + 600
            )
            self._credentials[uid] = role
            future.set_result(role)
            return role
        finally:
            del self._in_flight[digest]

    def forget_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._seen.items() if s.token_expiration <= now]:
            del self._seen[digest]
        for uid in [u for u, r in self._credentials.items() if r.credentials.expiration <= now]:
            del self._credentials[uid]


@dataclass(slots=True)
class AgentState:
    agent: Agent
    allowed_hosts: frozenset[str]
    link_ready: bool = False
    broker_reachable: bool = False

    @property
    def ready(self) -> bool:
        return self.link_ready and self.broker_reachable


STATE = web.AppKey("agent", AgentState)


def _host_address(host: str) -> str | None:
    """The IP literal of a Host header (`a.b.c.d[:port]` or `[v6][:port]`), else None."""
    if host.startswith("["):
        literal, _, _ = host[1:].partition("]")
    else:
        literal = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        return None


def _refuse(state: AgentState, status: int, outcome: str, message: str) -> web.Response:
    state.agent.metrics.requests.labels(outcome).inc()
    return web.json_response({"code": outcome, "message": message}, status=status)


async def credentials(request: web.Request) -> web.Response:
    state = request.app[STATE]
    host = request.headers.get("Host", "")
    address = _host_address(host)
    if address is None or address not in state.allowed_hosts:
        # A name (DNS rebinding) or another address: only the link-local endpoint answers.
        return _refuse(state, 403, "host_refused", "the Host must be the agent's address")
    token = request.headers.get("Authorization", "").strip()
    try:
        if not token:
            raise InvalidRequestException(
                "the Authorization header must carry the Pod's token "
                "(AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
            )
        check_token_shape(token)
        role = await state.agent.credentials(token)
    except EksAuthError as exc:
        if isinstance(exc, InvalidParameterException):
            exc.message = "the Authorization header is not a ServiceAccount token"
        state.agent.metrics.requests.labels(exc.code).inc()
        log.info("credentials_refused", error=exc.code, message=exc.message)
        return web.json_response(
            {"code": exc.code, "message": exc.message}, status=HTTP_STATUS.get(exc.code, 500)
        )
    state.agent.metrics.requests.labels("success").inc()
    return web.Response(body=orjson.dumps(sdk_credentials(role)), content_type="application/json")


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        return web.json_response({"code": "not_found", "message": exc.reason}, status=exc.status)
    except Exception:
        log.exception("internal_error", path=request.path)
        return web.json_response(
            {"code": "InternalServerException", "message": "internal error"}, status=500
        )
    return response


def make_agent_app(state: AgentState) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[STATE] = state
    app.router.add_get("/v1/credentials", credentials)
    return app


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.ready:
        return web.Response(text="ok")
    missing = []
    if not state.link_ready:
        missing.append("link or listeners not up")
    if not state.broker_reachable:
        missing.append("broker not reachable")
    return web.Response(status=503, text="not ready: " + ", ".join(missing))


async def metrics_page(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.agent.metrics.cached.set(state.agent.cache_size)
    response = web.Response(body=generate_latest(state.agent.metrics.registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def make_health_app(state: AgentState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def make_metrics_app(state: AgentState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", metrics_page)
    return app


async def _watch_broker(state: AgentState, broker: BrokerClient) -> None:
    while True:
        reachable = await broker.healthy()
        if reachable != state.broker_reachable:
            (log.info if reachable else log.warning)("broker_reachable", reachable=reachable)
        state.broker_reachable = reachable
        state.agent.forget_expired()
        await asyncio.sleep(10.0 if reachable else 2.0)


def _link(config: AgentConfig) -> None:
    from webhook.agent.link import LinkError, ensure_link

    try:
        ensure_link(config.interface, [listen.host for listen in config.listen])
    except LinkError as exc:
        raise ConfigError(str(exc)) from None


async def serve_agent(config: AgentConfig) -> int:
    if config.setup_link:
        await asyncio.to_thread(_link, config)
    metrics = AgentMetrics(production_registry())
    broker = BrokerClient(config)
    agent = Agent(broker, refresh_margin=config.refresh_margin, metrics=metrics)
    state = AgentState(agent, frozenset(str(listen.address) for listen in config.listen))
    runners = [
        web.AppRunner(make_agent_app(state), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT),
        web.AppRunner(make_health_app(state), access_log=None),
        web.AppRunner(make_metrics_app(state), access_log=None),
    ]
    done = asyncio.Event()
    _signals(done)
    task = asyncio.create_task(_watch_broker(state, broker))
    try:
        for runner in runners:
            await runner.setup()
        for listen in config.listen:
            await web.TCPSite(runners[0], host=listen.host, port=listen.port).start()
        await web.TCPSite(runners[1], host=config.health_host, port=config.health_port).start()
        await web.TCPSite(runners[2], host=config.health_host, port=config.metrics_port).start()
        state.link_ready = True
        log.info(
            "started",
            listen=[str(listen) for listen in config.listen],
            health_port=config.health_port,
            metrics_port=config.metrics_port,
            broker=config.broker_url,
        )
        await done.wait()
        log.info("shutting_down", timeout_seconds=SHUTDOWN_TIMEOUT)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for runner in runners:
            await runner.cleanup()
        await broker.close()
    log.info("stopped")
    return 0


def _signals(done: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if done.is_set():
            os._exit(1)
        log.info("signal", signal=name)
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)


def listen_hosts(listen: tuple[Listen, ...]) -> frozenset[str]:
    return frozenset(str(item.address) for item in listen)
