"""--cert-bootstrap against the real API server: the webhook creates its Secret, sets the
caBundle, restores it after drift, serves a rotated certificate, and /readyz reports a
caBundle that does not trust the served certificate."""

from __future__ import annotations

import base64
import socket
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.cluster import MANIFESTS, WEBHOOK_NAMESPACE, Cluster, WebhookProcess, metric_value
from tests.e2e.kube import load_manifests
from tests.e2e.processes import wait_until
from webhook.certificates.issuing import make_ca, make_serving_cert

pytestmark = pytest.mark.e2e

CONFIGURATION = "pod-identity-webhook-bootstrap"
SECRET = "pod-identity-webhook-cert"
SECRET_PATH = f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/secrets/{SECRET}"
CONFIG_PATH = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{CONFIGURATION}"


def _unverified() -> ssl.SSLContext:
    # The bootstrapped CA is made by the webhook; the API server's verification is the real test.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def readyz(port: int) -> int:
    url = f"https://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, context=_unverified(), timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def ca_bundles(cluster: Cluster) -> list[str]:
    return [
        h["clientConfig"].get("caBundle", "") for h in cluster.admin.get(CONFIG_PATH)["webhooks"]
    ]


@pytest.fixture(scope="module")
def bootstrapped(cluster: Cluster) -> Iterator[WebhookProcess]:
    # The component's RBAC, aimed at this test's configuration instead of the production name.
    rbac: list[dict[str, Any]] = load_manifests(
        MANIFESTS / "components" / "cert-bootstrap" / "rbac.yaml"
    )
    for obj in rbac:
        obj["metadata"]["name"] += "-e2e"
        for rule in obj.get("rules", []):
            if rule.get("resourceNames") == ["pod-identity-webhook"]:
                rule["resourceNames"] = [CONFIGURATION]
        if "roleRef" in obj:
            obj["roleRef"]["name"] += "-e2e"
    cluster.admin.apply_all(rbac)
    placeholder = cluster.spawn_webhook("bootstrap-placeholder")  # only lends its URL shape
    configuration = cluster.webhook_configuration(CONFIGURATION, placeholder, "bootstrap")
    placeholder.stop()
    webhook = cluster.spawn_webhook(
        "bootstrap",
        "--cert-bootstrap",
        f"--tls-secret={SECRET}",
        f"--namespace={WEBHOOK_NAMESPACE}",
        f"--webhook-configuration={CONFIGURATION}",
        "--cert-extra-names=127.0.0.1,localhost",
        "--resync-period=2s",
    )
    for hook in configuration["webhooks"]:
        hook["clientConfig"]["url"] = f"{webhook.url}/mutate"  # still the e2e CA: wrong on purpose
    cluster.register(configuration)
    wait_until(
        lambda: readyz(webhook.port) == 200, timeout=30, what="the bootstrapped webhook's /readyz"
    )
    cluster.wait_mutating("bootstrap", process=webhook)
    yield webhook
    cluster.unregister(CONFIGURATION)
    webhook.stop()
    cluster.admin.delete(SECRET_PATH)


def test_the_webhook_creates_its_secret_and_sets_the_ca_bundle(
    cluster: Cluster, bootstrapped: WebhookProcess
) -> None:
    secret = cluster.admin.get(SECRET_PATH)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert ca_bundles(cluster) == [secret["data"]["ca.crt"]]
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert served_serial(bootstrapped.port) == leaf.serial_number
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"pod-identity-webhook.{WEBHOOK_NAMESPACE}.svc" in names.get_values_for_type(
        x509.DNSName
    )
    assert readyz(bootstrapped.port) == 200
    assert metric_value(bootstrapped.metrics(), "pod_identity_webhook_ca_bundle_trusted") == 1


def test_a_drifted_ca_bundle_is_set_back(cluster: Cluster, bootstrapped: WebhookProcess) -> None:
    wrong = base64.b64encode(make_ca("someone-else")[0]).decode()
    patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": wrong}]
    cluster.admin.request("PATCH", CONFIG_PATH, patch, content_type="application/json-patch+json")
    secret = cluster.admin.get(SECRET_PATH)
    wait_until(
        lambda: ca_bundles(cluster) == [secret["data"]["ca.crt"]],
        timeout=15,
        what="the caBundle to be restored",
    )


def test_a_serving_certificate_due_for_renewal_is_rotated_and_served(
    cluster: Cluster, bootstrapped: WebhookProcess
) -> None:
    secret = cluster.admin.get(SECRET_PATH)
    ca_pem, ca_key = (base64.b64decode(secret["data"][k]) for k in ("ca.crt", "ca.key"))
    # Issued 300 of its 365 days ago: less than a third of its life is left.
    old_cert, old_key = make_serving_cert(
        ca_pem,
        ca_key,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        now=datetime.now(UTC) - timedelta(days=300),
    )
    secret["data"]["tls.crt"] = base64.b64encode(old_cert).decode()
    secret["data"]["tls.key"] = base64.b64encode(old_key).decode()
    cluster.admin.request("PUT", SECRET_PATH, secret)
    stale = x509.load_pem_x509_certificate(old_cert).serial_number

    def rotated() -> bool:
        current = cluster.admin.get(SECRET_PATH)["data"]["tls.crt"]
        serial = x509.load_pem_x509_certificate(base64.b64decode(current)).serial_number
        return serial != stale and served_serial(bootstrapped.port) == serial

    wait_until(rotated, timeout=20, what="the renewed certificate to be stored and served")
    assert ca_bundles(cluster) == [secret["data"]["ca.crt"]]  # same CA: the caBundle stays


def test_a_ca_bundle_that_does_not_trust_the_served_certificate_makes_the_webhook_unready(
    cluster: Cluster, bootstrapped: WebhookProcess
) -> None:
    # A second webhook serves the e2e certificate, which the bootstrapped caBundle does not trust.
    checker = cluster.spawn_webhook(
        "ca-check", f"--webhook-configuration={CONFIGURATION}", "--resync-period=1s"
    )
    try:
        # Until its ServiceAccount list has synced /readyz is 503 for that reason alone.
        wait_until(
            lambda: "does not trust the served certificate" in checker.readyz()[1],
            timeout=15,
            what="/readyz to report the mismatch",
        )
        assert checker.readyz()[0] == 503
        assert metric_value(checker.metrics(), "pod_identity_webhook_ca_bundle_trusted") == 0
    finally:
        checker.stop()


def test_the_bootstrapped_pair_leaves_no_file_behind_after_a_stop(
    cluster: Cluster, bootstrapped: WebhookProcess, tmp_path: Path
) -> None:
    # A second replica on the same Secret, its temporary directory under tmp_path: the private
    # key it wrote there must be gone once it stopped.
    webhook = cluster.spawn_webhook(
        "bootstrap-cleanup",
        "--cert-bootstrap",
        f"--tls-secret={SECRET}",
        f"--namespace={WEBHOOK_NAMESPACE}",
        "--cert-extra-names=127.0.0.1,localhost",
        env={"TMPDIR": str(tmp_path)},
    )
    wait_until(lambda: readyz(webhook.port) == 200, timeout=30, what="the second replica's /readyz")
    [made] = tmp_path.glob("pod-identity-webhook-*")  # the kubernetes client puts its own there
    assert sorted(path.name for path in made.iterdir()) == ["tls.crt", "tls.key"]
    assert stat.S_IMODE((made / "tls.key").stat().st_mode) == 0o600
    stored = base64.b64decode(cluster.admin.get(SECRET_PATH)["data"]["tls.crt"])
    assert served_serial(webhook.port) == x509.load_pem_x509_certificate(stored).serial_number
    assert webhook.stop() == 0
    assert list(tmp_path.iterdir()) == []  # the client's files too (removed at exit)
