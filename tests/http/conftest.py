"""Fixtures of the HTTP tier: an in-process webhook behind aiohttp's test client, and a CA."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient

from tests.http.helpers import JSON, REPO, SERVICE_ACCOUNTS, lowest, wait_until_sync
from tests.http.processes import STARTUP_DEADLINE, Files, Launch, argv
from tests.http.processes import Webhook as Process
from tests.support.ports import free_port
from webhook.certificates.issuing import make_ca, make_serving_cert
from webhook.certificates.serving import CertificateReloader
from webhook.config import Config
from webhook.server.app import Webhook, make_metrics_app, make_webhook_app
from webhook.server.metrics import Metrics
from webhook.sources.store import Store


@dataclasses.dataclass
class Harness:
    """One webhook: its collaborators, the TLS-port app and the metrics-port app."""

    config: Config
    store: Store
    metrics: Metrics
    hook: Webhook
    client: TestClient[Any, Any]
    metrics_client: TestClient[Any, Any]

    async def post(
        self, body: bytes | str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = body.encode() if isinstance(body, str) else body
        response = await self.client.post(
            # BytesIO: aiohttp warns about (filterwarnings=error) large raw bytes bodies.
            "/mutate",
            data=io.BytesIO(data),
            headers=dict(JSON if headers is None else headers),
        )
        assert response.content_type == "application/json"
        return response.status, await response.json()

    async def review(self, review: Mapping[str, Any]) -> dict[str, Any]:
        """POST a review that must be answered 200; returns the AdmissionReview answer."""
        status, answer = await self.post(json.dumps(review))
        assert status == 200, answer
        return answer

    async def metrics_text(self) -> str:
        response = await self.metrics_client.get("/metrics")
        assert response.status == 200
        return await response.text()


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
def make_harness(aiohttp_client: AiohttpClient) -> MakeHarness:
    """`await make_harness(grace_period=..., synced=True, certificates=None, **config)`."""

    async def build(
        *,
        synced: bool = True,
        certificates: CertificateReloader | None = None,
        service_accounts: list[tuple[str, str, dict[str, Any] | None]] | None = None,
        **config: Any,
    ) -> Harness:
        config.setdefault("grace_period", 0.0)
        settings = Config(**config)
        store = Store(settings.mutation)
        metrics = Metrics(CollectorRegistry())
        metrics.watch_store(store)
        if synced:
            store.replace_service_accounts(
                SERVICE_ACCOUNTS if service_accounts is None else service_accounts
            )
        hook = Webhook(
            config=settings,
            store=store,
            metrics=metrics,
            certificates=certificates,
            jitter=lowest,
        )
        client = await aiohttp_client(make_webhook_app(hook))
        metrics_client = await aiohttp_client(make_metrics_app(hook))
        return Harness(settings, store, metrics, hook, client, metrics_client)

    return build


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    """The default webhook: no grace period, the dev ServiceAccounts, synced."""
    return await make_harness()


# --- certificates -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Authority:
    cert: bytes
    key: bytes

    def issue(self) -> tuple[bytes, bytes]:
        """A fresh serving pair for localhost and 127.0.0.1."""
        return make_serving_cert(
            self.cert, self.key, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )


@pytest.fixture(scope="session")
def authority() -> Authority:
    return Authority(*make_ca())


@pytest.fixture(scope="session")
def other_authority() -> Authority:
    return Authority(*make_ca("some-other-ca"))


@dataclasses.dataclass(frozen=True)
class CertFiles:
    directory: Path
    cert: Path
    key: Path

    def write(self, cert: bytes, key: bytes) -> None:
        self.cert.write_bytes(cert)
        self.key.write_bytes(key)


@pytest.fixture
def cert_files(tmp_path: Path, authority: Authority) -> CertFiles:
    """tls.crt and tls.key in a fresh directory, holding a first serving pair."""
    directory = tmp_path / "certs"
    directory.mkdir()
    files = CertFiles(directory, directory / "tls.crt", directory / "tls.key")
    files.write(*authority.issue())
    return files


# --- processes ----------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path, authority: Authority) -> Files:
    cert, key = authority.issue()
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    accounts = tmp_path / "service-accounts.yaml"
    accounts.write_text((REPO / "dev" / "service-accounts.yaml").read_text())
    return Files(tmp_path / "tls.crt", tmp_path / "tls.key", accounts, authority.cert)


@pytest.fixture
def launch(tmp_path: Path, files: Files) -> Iterator[Launch]:
    """`launch(*flags)`: a running, ready webhook; killed at the end of the test whatever happens."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> Process:
        port, metrics_port = free_port(), free_port()
        stdout, stderr = tmp_path / f"stdout-{port}.log", tmp_path / f"stderr-{port}.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                argv(files, port, metrics_port, *extra), stdout=out, stderr=err, cwd=tmp_path
            )
        started.append(proc)
        webhook = Process(proc, port, metrics_port, stdout, stderr, files.ca)
        wait_until_sync(webhook.ready, timeout=STARTUP_DEADLINE, interval=0.05, what="readiness")
        return webhook

    try:
        yield start
    finally:
        for proc in started:
            # SIGTERM first: a process that exits on its own writes its coverage data.
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait(timeout=10)
