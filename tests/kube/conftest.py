"""Fixtures of the Kubernetes tier: a fake API server, the real client wired to it, a webhook."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from tests.kube.fakeapi import FakeApi
from tests.support.reviews import make_pod, make_review
from webhook import kube
from webhook.config import Config
from webhook.server.app import Webhook, make_webhook_app
from webhook.server.metrics import Metrics
from webhook.sources.informers import Informers, start_informers
from webhook.sources.store import Store


@pytest.fixture(autouse=True)
def _isolated_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig of the machine running the tests, and short reflector backoffs."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(kube, "BACKOFF_START", 0.05)
    monkeypatch.setattr(kube, "BACKOFF_MAX", 0.4)


@pytest.fixture
async def fake() -> AsyncIterator[FakeApi]:
    server = FakeApi()
    await server.start()
    yield server
    server.end_watches()
    await server.close()


@dataclasses.dataclass
class Running:
    """The real Kubernetes wiring (reflectors, fetcher) feeding a Store, plus what it reported."""

    config: Config
    store: Store
    kubernetes: Informers
    metrics: Metrics
    errors: list[str]
    fetches: list[str]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def threads_alive(self) -> bool:
        return self.kubernetes.running


Start = Callable[..., Running]


@pytest.fixture
async def start(fake: FakeApi) -> AsyncIterator[Start]:
    """`start(**config)`: start_informers against the fake (Config fields as keywords)."""
    started: list[Running] = []

    def run(**given: Any) -> Running:
        given.setdefault("kube_api", fake.url)
        config = Config(**given)
        store = Store(config.mutation)
        metrics = Metrics(CollectorRegistry())
        metrics.watch_store(store)
        errors: list[str] = []
        fetches: list[str] = []

        def on_error(source: str) -> None:
            errors.append(source)
            metrics.api_errors.labels(source).inc()

        def on_fetch(result: str) -> None:
            fetches.append(result)
            metrics.fetches.labels(result).inc()

        kubernetes = start_informers(
            config, store, asyncio.get_running_loop(), on_error=on_error, on_fetch=on_fetch
        )
        running = Running(config, store, kubernetes, metrics, errors, fetches)
        started.append(running)
        return running

    yield run
    for running in started:
        await running.kubernetes.close()
        assert running.kubernetes.stopped, "close() returned with reflector threads running"


@dataclasses.dataclass
class Admission:
    """A webhook app on the store of a `Running`, behind aiohttp's test client."""

    running: Running
    hook: Webhook
    client: TestClient[Any, Any]

    async def review(self, service_account: str, *, namespace: str = "default") -> dict[str, Any]:
        response = await self.client.post(
            "/mutate",
            data=json.dumps(
                make_review(make_pod(service_account, namespace=namespace), namespace=namespace)
            ),
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    async def readyz(self) -> int:
        response = await self.client.get("/readyz")
        return response.status

    def lookups(self, path: str) -> float:
        return self.running.sample("pod_identity_webhook_service_account_lookups_total", path=path)


MakeAdmission = Callable[..., Awaitable[Admission]]


@pytest.fixture
def admission(start: Start, aiohttp_client: AiohttpClient) -> MakeAdmission:
    """`await admission(**config)`: the webhook app wired to the fake API server."""

    async def build(**given: Any) -> Admission:
        running = start(**given)
        hook = Webhook(
            config=running.config,
            store=running.store,
            metrics=running.metrics,
            jitter=lambda low, _high: low,
        )
        client = await aiohttp_client(make_webhook_app(hook))
        return Admission(running, hook, client)

    return build
