"""--client-ca-file and --client-allowed-names: the handshake needs a client certificate from
the client CAs, the CA file is reloaded (CAs added and removed), the names are checked, and the
probes move to the metrics port (issue 16, item 3). The real API server presenting its client
certificate is in tests/e2e/test_client_auth.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.http.conftest import Authority, CertFiles
from tests.http.helpers import SERVICE_ACCOUNTS, lowest, sample_review
from webhook.certificates.serving import CertificateReloader, client_names, server_context
from webhook.config import Config, config_from_argv
from webhook.errors import ConfigError
from webhook.server.app import Webhook, make_metrics_app, make_webhook_app
from webhook.server.clients import require_client_certificates
from webhook.server.metrics import Metrics
from webhook.sources.store import Store

pytestmark = pytest.mark.timeout(30)

API_SERVER_NAME = "kube-apiserver-webhook-client"


@dataclasses.dataclass
class Served:
    port: int
    metrics_port: int
    reloader: CertificateReloader
    ca_file: Path
    server_ca: bytes
    errors: list[Exception]


Start = Callable[..., Awaitable[Served]]


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA(organization_name="e2e API server client CA")


@pytest.fixture
async def start(
    cert_files: CertFiles, authority: Authority, client_ca: trustme.CA, tmp_path: Path
) -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def run(*, allowed: tuple[str, ...] = (), ca_pem: bytes | None = None) -> Served:
        ca_file = tmp_path / "client-ca.crt"
        ca_file.write_bytes(client_ca.cert_pem.bytes() if ca_pem is None else ca_pem)
        errors: list[Exception] = []

        def report(_: object, error: Exception | None) -> None:
            if error is not None:
                errors.append(error)

        context = server_context("1.2", ())
        reloader = CertificateReloader(
            context,
            str(cert_files.cert),
            str(cert_files.key),
            on_reload=report,
            client_ca=str(ca_file),
            factory=lambda: server_context("1.2", ()),
        )
        reloader.load()
        config = Config(grace_period=0.0, client_ca_file=str(ca_file), client_allowed_names=allowed)
        store = Store(config.mutation)
        store.replace_service_accounts(SERVICE_ACCOUNTS)
        hook = Webhook(
            config=config,
            store=store,
            metrics=Metrics(CollectorRegistry()),
            certificates=reloader,
            jitter=lowest,
        )
        webhook_app, metrics_app = make_webhook_app(hook), make_metrics_app(hook)
        require_client_certificates(webhook_app, metrics_app, config)
        server = TestServer(webhook_app, host="127.0.0.1")
        await server.start_server(ssl=context)
        metrics = TestServer(metrics_app, host="127.0.0.1")
        await metrics.start_server()
        servers.extend([server, metrics])
        assert server.port is not None
        assert metrics.port is not None
        return Served(server.port, metrics.port, reloader, ca_file, authority.cert, errors)

    yield run
    for server in servers:
        await server.close()


def client(
    served: Served, issuer: trustme.CA | None, *, name: str = API_SERVER_NAME, tls12: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=served.server_ca.decode())
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if issuer is not None:
        issuer.issue_cert(name, common_name=name).configure_cert(context)
    return context


def post_review(port: int, context: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    """A blocking HTTPS POST of a review, so that OpenSSL's reasons reach the test as is."""
    body = json.dumps(sample_review()).encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        request = (
            f"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        tls.sendall(request + body)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload)


async def refused(port: int, context: ssl.SSLContext) -> str:
    """Where a connection without an acceptable certificate ends: `handshake` (TLS 1.2, and
    1.3 servers that check before the client's Finished) or `request` (TLS 1.3: the client
    finishes first, then the server drops the connection without an answer)."""

    def attempt() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            except (ssl.SSLError, ConnectionError):
                return "handshake"
            with tls:
                try:
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = tls.recv(1024)
                except (ssl.SSLError, ConnectionError):
                    return "request"
                assert answer == b"", f"the server answered: {answer[:80]!r}"
                return "request"

    return await asyncio.to_thread(attempt)


async def test_a_client_certificate_from_the_client_ca_is_served(
    start: Start, client_ca: trustme.CA
) -> None:
    served = await start()
    status, review = await asyncio.to_thread(post_review, served.port, client(served, client_ca))
    assert status == 200
    assert review["response"]["allowed"] is True  # type: ignore[index]


@pytest.mark.parametrize("tls12", [True, False], ids=["tls1.2", "tls1.3"])
async def test_without_a_client_certificate_the_handshake_fails(start: Start, tls12: bool) -> None:
    served = await start()
    where = await refused(served.port, client(served, None, tls12=tls12))
    assert where == ("handshake" if tls12 else "request")


async def test_a_certificate_from_another_ca_is_refused(start: Start) -> None:
    served = await start()
    stranger = trustme.CA(organization_name="not the API server")
    assert await refused(served.port, client(served, stranger, tls12=True)) == "handshake"


async def test_a_changed_ca_file_adds_and_removes_cas(start: Start, client_ca: trustme.CA) -> None:
    served = await start()
    successor = trustme.CA(organization_name="the next client CA")
    served.ca_file.write_bytes(successor.cert_pem.bytes())
    assert served.reloader.check() is True
    status, _ = await asyncio.to_thread(post_review, served.port, client(served, successor))
    assert status == 200
    # The previous CA is gone, although OpenSSL cannot remove a CA from a context.
    assert await refused(served.port, client(served, client_ca, tls12=True)) == "handshake"


async def test_a_broken_ca_file_keeps_the_previous_cas(start: Start, client_ca: trustme.CA) -> None:
    served = await start()
    served.ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    assert served.reloader.check() is False
    assert served.errors
    assert "--client-ca-file" in str(served.errors[-1])
    status, _ = await asyncio.to_thread(post_review, served.port, client(served, client_ca))
    assert status == 200


async def test_allowed_names_are_checked_after_the_handshake(
    start: Start, client_ca: trustme.CA
) -> None:
    served = await start(allowed=(API_SERVER_NAME, "other-apiserver"))
    status, _ = await asyncio.to_thread(post_review, served.port, client(served, client_ca))
    assert status == 200
    status, body = await asyncio.to_thread(
        post_review, served.port, client(served, client_ca, name="someone-else")
    )
    assert status == 403
    assert "someone-else" in str(body["error"])


async def test_the_probes_are_served_on_the_metrics_port(start: Start) -> None:
    served = await start()

    def get(path: str) -> int:
        with socket.create_connection(("127.0.0.1", served.metrics_port), timeout=5) as raw:
            raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return int(raw.recv(1024).split(b" ", 2)[1])

    assert await asyncio.to_thread(get, "/healthz") == 200
    assert await asyncio.to_thread(get, "/readyz") == 200
    assert await asyncio.to_thread(get, "/metrics") == 200


def test_without_the_flag_the_metrics_app_has_no_probes() -> None:
    config = Config()
    hook = Webhook(
        config=config, store=Store(config.mutation), metrics=Metrics(CollectorRegistry())
    )
    webhook_app, metrics_app = make_webhook_app(hook), make_metrics_app(hook)
    before = len(webhook_app.middlewares)
    require_client_certificates(webhook_app, metrics_app, config)
    assert len(webhook_app.middlewares) == before
    paths = {r.resource.canonical for r in metrics_app.router.routes() if r.resource is not None}
    assert paths == {"/metrics"}


@pytest.mark.parametrize(
    ("pem", "message"),
    [(None, "No such file"), (b"", "--client-ca-file"), (b"garbage", "--client-ca-file")],
)
def test_an_unusable_ca_file_is_a_start_up_error(
    cert_files: CertFiles, tmp_path: Path, pem: bytes | None, message: str
) -> None:
    ca_file = tmp_path / "ca.crt"
    if pem is not None:
        ca_file.write_bytes(pem)
    reloader = CertificateReloader(
        server_context("1.2", ()),
        str(cert_files.cert),
        str(cert_files.key),
        client_ca=str(ca_file),
        factory=lambda: server_context("1.2", ()),
    )
    with pytest.raises(ConfigError, match=message):
        reloader.load()


def test_allowed_names_need_the_ca_file() -> None:
    with pytest.raises(ConfigError, match="--client-ca-file"):
        config_from_argv(["--client-allowed-names=kube-apiserver"])
    config, _, _ = config_from_argv(["--client-ca-file=/ca.crt", "--client-allowed-names= a , b,,"])
    assert config.client_allowed_names == ("a", "b")


def test_client_names_are_common_names_then_dns_names() -> None:
    peercert = {
        "subject": ((("organizationName", "x"),), (("commonName", "apiserver"),)),
        "subjectAltName": (("DNS", "apiserver.example"), ("IP Address", "10.0.0.1")),
    }
    assert client_names(peercert) == ["apiserver", "apiserver.example"]
