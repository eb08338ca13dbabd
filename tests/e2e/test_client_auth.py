"""mTLS with the real kube-apiserver (issue 16, item 3): the API server, configured with an
AdmissionConfiguration whose kubeconfig gives it a client certificate, reaches a webhook that
requires one; a client without a certificate, or with one from another CA, never gets an
answer; a certificate from the right CA with a name not on the allow-list gets 403."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e import pki
from tests.e2e.cluster import (
    APISERVER_CLIENT_NAME,
    Cluster,
    Namespace,
    WebhookProcess,
    client_context,
    http_get,
)
from tests.e2e.helpers import ROLE_ARN, assert_web_identity, pod
from tests.e2e.processes import wait_until
from tests.support.reviews import ROLE

pytestmark = pytest.mark.e2e

SELECTOR = "mtls"


@pytest.fixture(scope="module")
def mtls_webhook(cluster: Cluster) -> Iterator[WebhookProcess]:
    """A webhook that requires the API server's client certificate, registered for `mtls`."""
    webhook = cluster.spawn_webhook(
        SELECTOR,
        f"--client-ca-file={cluster.apiserver_client_ca.cert_path}",
        f"--client-allowed-names={APISERVER_CLIENT_NAME}",
    )
    name = ""
    try:
        # The TLS port takes no probe without a client certificate: readiness is on the
        # metrics port, as the manifests' probes use it.
        wait_until(
            lambda: http_get(webhook.metrics_port, "/readyz")[0] == 200,
            timeout=30,
            what="webhook mtls /readyz on the metrics port",
            alive=lambda: None if webhook.process.running else "webhook mtls exited",
        )
        name = cluster.register(
            cluster.webhook_configuration("pod-identity-webhook-mtls", webhook, SELECTOR)
        )
        cluster.wait_mutating(SELECTOR, process=webhook)
        yield webhook
    finally:
        if name:
            cluster.unregister(name)
        webhook.stop()


def _exchange(webhook: WebhookProcess, context: ssl.SSLContext) -> str:
    """`handshake` or `request` where the connection ended without an answer, else the status
    line of the answer to GET /healthz."""
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except (ssl.SSLError, ConnectionError):
            return "handshake"
        with tls:
            try:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: webhook\r\nConnection: close\r\n\r\n")
                answer = tls.recv(4096)
            except (ssl.SSLError, ConnectionError):
                return "request"
            return answer.split(b"\r\n", 1)[0].decode() if answer else "request"


def _tls12(context: ssl.SSLContext) -> ssl.SSLContext:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_the_api_server_presents_its_client_certificate(
    mtls_webhook: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> None:
    namespace = make_namespace(webhook=SELECTOR)
    namespace.service_account("app", {ROLE_ARN: ROLE})
    assert_web_identity(namespace.run(pod("through-mtls")))
    assert [r["outcome"] for r in mtls_webhook.admissions(namespace.name)] == ["mutated"]


def test_a_client_without_a_certificate_is_refused_in_the_handshake(
    cluster: Cluster, mtls_webhook: WebhookProcess
) -> None:
    ca = cluster.webhook_ca.cert_path
    assert _exchange(mtls_webhook, _tls12(client_context(ca))) == "handshake"
    # TLS 1.3: the client's side of the handshake ends first; the server then drops it unheard.
    assert _exchange(mtls_webhook, client_context(ca)) == "request"
    # The cluster's admin certificate is from another CA.
    admin = client_context(ca, cluster.admin_cert.cert_path, cluster.admin_cert.key_path)
    assert _exchange(mtls_webhook, _tls12(admin)) == "handshake"


def test_a_certificate_of_the_right_ca_needs_an_allowed_name(
    cluster: Cluster, mtls_webhook: WebhookProcess, tmp_path: Path
) -> None:
    ca = cluster.webhook_ca.cert_path
    allowed = client_context(
        ca, cluster.apiserver_client_cert.cert_path, cluster.apiserver_client_cert.key_path
    )
    assert _exchange(mtls_webhook, allowed) == "HTTP/1.1 200 OK"
    other = pki.client_cert(cluster.apiserver_client_ca, tmp_path, "other", user="other", groups=())
    refused = client_context(ca, other.cert_path, other.key_path)
    assert _exchange(mtls_webhook, refused) == "HTTP/1.1 403 Forbidden"
    assert mtls_webhook.log_records("client_refused", names=["other"])
