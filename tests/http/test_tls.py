"""The webhook over real TLS: the served certificate, its rotation, and the TLS flags."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from prometheus_client import CollectorRegistry

from tests.http.conftest import Authority, CertFiles
from tests.http.helpers import JSON, SERVICE_ACCOUNTS, lowest, sample_review, wait_until
from webhook.certificates.issuing import certificate_serial
from webhook.certificates.serving import CertificateReloader, LoadedCertificate, server_context
from webhook.config import Config
from webhook.server.app import Webhook, make_webhook_app
from webhook.server.metrics import Metrics
from webhook.sources.store import Store

pytestmark = pytest.mark.timeout(30)

Reports = list[tuple[LoadedCertificate | None, Exception | None]]


@dataclasses.dataclass
class TlsWebhook:
    port: int
    reloader: CertificateReloader
    reports: Reports
    ca: bytes


StartTls = Callable[..., Awaitable[TlsWebhook]]


@pytest.fixture
async def start_tls(cert_files: CertFiles, authority: Authority) -> AsyncIterator[StartTls]:
    """`await start_tls(min_version="1.2", ciphers=(), interval=2.0, files=cert_files)`."""
    servers: list[TestServer] = []

    async def start(
        *,
        min_version: str = "1.2",
        ciphers: tuple[str, ...] = (),
        interval: float = 2.0,
        files: CertFiles = cert_files,
    ) -> TlsWebhook:
        reports: Reports = []
        context = server_context(min_version, ciphers)
        reloader = CertificateReloader(
            context,
            str(files.cert),
            str(files.key),
            interval=interval,
            on_reload=lambda loaded, error: reports.append((loaded, error)),
        )
        reloader.load()
        config = Config(grace_period=0.0)
        store = Store(config.mutation)
        store.replace_service_accounts(SERVICE_ACCOUNTS)
        hook = Webhook(
            config=config,
            store=store,
            metrics=Metrics(CollectorRegistry()),
            certificates=reloader,
            jitter=lowest,
        )
        server = TestServer(make_webhook_app(hook), host="127.0.0.1")
        await server.start_server(ssl=context)
        servers.append(server)
        assert server.port is not None
        return TlsWebhook(server.port, reloader, reports, authority.cert)

    yield start
    for server in servers:
        await server.close()


def client_context(
    ca: bytes, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.decode())
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@contextlib.asynccontextmanager
async def connect(
    port: int, context: ssl.SSLContext
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, ssl.SSLObject]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        yield reader, writer, ssl_object
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def handshake_error(port: int, context: ssl.SSLContext) -> ssl.SSLError:
    """The error of a handshake that must fail; a blocking client so OpenSSL's reason shows."""

    def attempt() -> ssl.SSLError:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    raise AssertionError(f"handshake succeeded: {tls.version()} {tls.cipher()}")
            except ssl.SSLError as exc:
                return exc

    return await asyncio.to_thread(attempt)


def peer_serial(ssl_object: ssl.SSLObject) -> int:
    der = ssl_object.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def served_serial(webhook: TlsWebhook) -> int:
    """The serial of the certificate a NEW connection is served."""
    async with connect(webhook.port, client_context(webhook.ca)) as (_, _, ssl_object):
        return peer_serial(ssl_object)


async def healthz_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """GET /healthz on an open (keep-alive) connection; returns the status line."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status.strip()


def serial_of(path: Path) -> int:
    return certificate_serial(path.read_bytes())


# --- serving ------------------------------------------------------------------------------------


async def test_the_handshake_serves_the_certificate_from_the_files(
    start_tls: StartTls, cert_files: CertFiles
):
    webhook = await start_tls()

    async with connect(webhook.port, client_context(webhook.ca)) as (_, _, ssl_object):
        assert peer_serial(ssl_object) == serial_of(cert_files.cert)
        assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")


async def test_mutate_answers_over_tls(start_tls: StartTls):
    webhook = await start_tls()
    connector = aiohttp.TCPConnector(ssl=client_context(webhook.ca))

    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(
            f"https://127.0.0.1:{webhook.port}/mutate",
            data=json.dumps(sample_review()),
            headers=JSON,
        ) as response:
            assert response.status == 200
            answer: dict[str, Any] = await response.json()
        async with session.get(f"https://127.0.0.1:{webhook.port}/readyz") as ready:
            assert ready.status == 200

    assert answer["response"]["patchType"] == "JSONPatch"


async def test_a_client_that_trusts_another_ca_rejects_the_certificate(
    start_tls: StartTls, other_authority: Authority
):
    webhook = await start_tls()

    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(webhook.port, client_context(other_authority.cert)):
            pass


# --- rotation -----------------------------------------------------------------------------------


async def test_new_connections_get_a_rewritten_pair_after_a_check(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls()
    old = await served_serial(webhook)

    cert_files.write(*authority.issue())
    assert webhook.reloader.check() is True

    new = await served_serial(webhook)
    assert new == serial_of(cert_files.cert)
    assert new != old
    ((loaded, error),) = webhook.reports
    assert error is None
    assert loaded is not None
    assert loaded.serial == new


async def test_an_open_connection_keeps_its_certificate_and_keeps_working_after_rotation(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls()
    old = serial_of(cert_files.cert)

    async with connect(webhook.port, client_context(webhook.ca)) as (reader, writer, ssl_object):
        assert await healthz_on(reader, writer) == b"HTTP/1.1 200 OK"
        cert_files.write(*authority.issue())
        assert webhook.reloader.check() is True

        assert await healthz_on(reader, writer) == b"HTTP/1.1 200 OK"
        assert peer_serial(ssl_object) == old
        assert await served_serial(webhook) == serial_of(cert_files.cert) != old


async def test_an_unchanged_pair_is_not_reloaded(start_tls: StartTls):
    webhook = await start_tls()

    assert webhook.reloader.check() is False
    assert webhook.reloader.check() is False
    assert webhook.reports == []


def _secret_volume(directory: Path, cert: bytes, key: bytes, stamp: str) -> None:
    """Lay out or update a directory the way the kubelet updates a Secret volume: the data in
    a timestamped directory, `..data` pointing at it, and the file names pointing into `..data`;
    an update swaps `..data` atomically with rename(2)."""
    target = directory / f"..{stamp}"
    target.mkdir()
    (target / "tls.crt").write_bytes(cert)
    (target / "tls.key").write_bytes(key)
    previous = (directory / "..data").resolve() if (directory / "..data").exists() else None
    (directory / "..data_tmp").symlink_to(target.name)
    (directory / "..data_tmp").replace(directory / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if previous is not None:
        for child in previous.iterdir():
            child.unlink()
        previous.rmdir()


async def test_a_secret_volume_symlink_swap_is_picked_up(
    start_tls: StartTls, tmp_path: Path, authority: Authority
):
    directory = tmp_path / "secret"
    directory.mkdir()
    first = authority.issue()
    _secret_volume(directory, *first, "2026_01_01_00_00_00.000000001")
    files = CertFiles(directory, directory / "tls.crt", directory / "tls.key")
    webhook = await start_tls(files=files)
    assert await served_serial(webhook) == certificate_serial(first[0])

    second = authority.issue()
    _secret_volume(directory, *second, "2026_02_01_00_00_00.000000002")
    assert webhook.reloader.check() is True

    assert await served_serial(webhook) == certificate_serial(second[0])
    assert (directory / "tls.crt").readlink() == Path("..data/tls.crt")


async def test_the_polling_reloader_picks_up_a_swap_by_itself(
    start_tls: StartTls, tmp_path: Path, authority: Authority
):
    directory = tmp_path / "secret"
    directory.mkdir()
    _secret_volume(directory, *authority.issue(), "2026_01_01_00_00_00.000000001")
    files = CertFiles(directory, directory / "tls.crt", directory / "tls.key")
    webhook = await start_tls(files=files, interval=0.02)
    poller = asyncio.create_task(webhook.reloader.run())
    try:
        second = authority.issue()
        _secret_volume(directory, *second, "2026_02_01_00_00_00.000000002")
        wanted = certificate_serial(second[0])

        async def rotated() -> bool:
            return await served_serial(webhook) == wanted

        await wait_until(rotated, timeout=5, interval=0.02, what="the new certificate")
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def test_traffic_never_fails_while_the_pair_is_rewritten_under_it(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls(interval=0.005)
    old = serial_of(cert_files.cert)
    new_cert, new_key = authority.issue()
    new = certificate_serial(new_cert)
    poller = asyncio.create_task(webhook.reloader.run())
    seen: list[int] = []
    try:
        for i in range(40):
            if i == 10:
                # A naive tool: certificate first, key a moment later (a mismatched pair).
                cert_files.cert.write_bytes(new_cert)
                await asyncio.sleep(0.03)
                cert_files.key.write_bytes(new_key)
            async with connect(webhook.port, client_context(webhook.ca)) as (reader, writer, so):
                assert await healthz_on(reader, writer) == b"HTTP/1.1 200 OK"
                seen.append(peer_serial(so))
            await asyncio.sleep(0.005)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller

    assert set(seen) == {old, new}
    switched = seen.index(new)
    assert seen[:switched] == [old] * switched
    assert seen[switched:] == [new] * (len(seen) - switched)
    assert webhook.reloader.current is not None
    assert webhook.reloader.current.serial == new


async def test_a_broken_new_key_keeps_the_old_certificate_and_is_reported(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls()
    old = serial_of(cert_files.cert)
    new_cert, _ = authority.issue()

    cert_files.write(new_cert, b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    assert webhook.reloader.check() is False

    assert await served_serial(webhook) == old
    assert webhook.reloader.current is not None
    assert webhook.reloader.current.serial == old
    ((loaded, error),) = webhook.reports
    assert loaded is None
    assert error is not None
    assert str(cert_files.key) in str(error)


async def test_a_broken_pair_is_reported_once_and_a_fixed_pair_is_then_served(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls()
    new_cert, new_key = authority.issue()
    cert_files.write(new_cert, b"not a key")

    assert webhook.reloader.check() is False
    assert webhook.reloader.check() is False
    assert len(webhook.reports) == 1

    cert_files.key.write_bytes(new_key)
    assert webhook.reloader.check() is True
    assert await served_serial(webhook) == certificate_serial(new_cert)
    assert webhook.reports[-1][1] is None


async def test_a_certificate_with_the_old_key_is_refused(
    start_tls: StartTls, cert_files: CertFiles, authority: Authority
):
    webhook = await start_tls()
    old = serial_of(cert_files.cert)
    new_cert, _ = authority.issue()

    cert_files.cert.write_bytes(new_cert)
    assert webhook.reloader.check() is False

    assert await served_serial(webhook) == old
    assert webhook.reports[-1][0] is None


async def test_removed_files_keep_the_old_certificate_serving(
    start_tls: StartTls, cert_files: CertFiles
):
    webhook = await start_tls()
    old = serial_of(cert_files.cert)
    saved = cert_files.cert.read_bytes(), cert_files.key.read_bytes()
    cert_files.cert.unlink()

    assert webhook.reloader.check() is False
    assert webhook.reloader.check() is False

    assert await served_serial(webhook) == old
    assert len(webhook.reports) == 1
    cert_files.write(*saved)
    assert webhook.reloader.check() is False  # the same pair again: nothing to reload
    assert await served_serial(webhook) == old


# --- TLS flags ----------------------------------------------------------------------------------


async def test_tls_min_version_1_3_refuses_a_tls_1_2_client(start_tls: StartTls):
    webhook = await start_tls(min_version="1.3")

    error = await handshake_error(
        webhook.port, client_context(webhook.ca, maximum=ssl.TLSVersion.TLSv1_2)
    )

    # asyncio's server closes without sending an alert, so the client only sees the EOF.
    assert isinstance(error, ssl.SSLError)
    async with connect(webhook.port, client_context(webhook.ca)) as (_, _, ssl_object):
        assert ssl_object.version() == "TLSv1.3"


async def test_the_default_minimum_refuses_a_tls_1_1_client(start_tls: StartTls):
    webhook = await start_tls()
    # A client that really offers TLS 1.1 (OpenSSL's own security level would otherwise stop it).
    context = client_context(webhook.ca, ciphers="DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1

    error = await handshake_error(webhook.port, context)

    # asyncio's server closes without sending an alert, so the client only sees the EOF.
    assert isinstance(error, ssl.SSLError)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(error)  # the client did offer TLS 1.1
    assert await served_serial(webhook)


async def test_a_tls_1_2_client_negotiates_the_one_allowed_cipher_suite(start_tls: StartTls):
    webhook = await start_tls(ciphers=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",))
    context = client_context(webhook.ca, maximum=ssl.TLSVersion.TLSv1_2)

    async with connect(webhook.port, context) as (_, _, ssl_object):
        cipher = ssl_object.cipher()

    assert cipher is not None
    assert cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert cipher[1] == "TLSv1.2"


async def test_a_tls_1_2_client_without_the_allowed_suite_is_refused(start_tls: StartTls):
    webhook = await start_tls(ciphers=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",))
    context = client_context(
        webhook.ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"
    )

    error = await handshake_error(webhook.port, context)

    assert isinstance(error, ssl.SSLError)
    assert await served_serial(webhook)  # the same server still accepts an ordinary client


async def test_cipher_suites_do_not_restrict_tls_1_3(start_tls: StartTls):
    webhook = await start_tls(ciphers=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",))

    async with connect(webhook.port, client_context(webhook.ca)) as (_, _, ssl_object):
        assert ssl_object.version() == "TLSv1.3"


async def test_go_default_suites_exclude_cbc_sha256(start_tls: StartTls):
    webhook = await start_tls()
    context = client_context(
        webhook.ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA256"
    )

    error = await handshake_error(webhook.port, context)

    assert isinstance(error, ssl.SSLError)
    assert await served_serial(webhook)  # the same server still accepts an ordinary client
