"""The webhook under the events a cluster puts it through while Pods keep coming: a rolling
restart, a certificate rotation through its Secret, and a replica killed with SIGKILL.

Each keeps creating Pods whose ServiceAccount has a role and counts those admitted without
credentials (with `failurePolicy: Ignore` a webhook that does not answer lets them through
unmutated). The counts are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.cluster import Namespace
from tests.e2e.processes import wait_until
from tests.node.deployment import DEPLOYMENT, NAMESPACE, SECRET, Deployed
from tests.node.load import PodLoad
from tests.node.node import Node
from tests.support.reviews import role_arn

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

ROLE = role_arn("node-tier-load")


def _namespace(node: Node, prefix: str) -> Namespace:
    """A namespace with the ServiceAccount `app` that has a role."""
    namespace = node.namespace(prefix)
    namespace.service_account("app", {"eks.amazonaws.com/role-arn": ROLE})
    return namespace


def _webhook_call_failures(node: Node) -> int:
    log = node.processes["kube-apiserver"].log_path.read_text(errors="replace")
    return log.count("failed calling webhook")


def test_rolling_restart_under_load_loses_no_credentials(webhook: Deployed, node: Node) -> None:
    """20 Pods a second for 60 s; `kubectl rollout restart` five seconds in."""
    ns = _namespace(node, "rollout")
    before = {pod["metadata"]["uid"] for pod in webhook.pods()}
    failures_before = _webhook_call_failures(node)
    load = PodLoad(node.admin, ns.name, "app", rate=20, seconds=60, prefix="rollout").start()
    time.sleep(5)
    restarted = time.monotonic()
    node.kubectl("-n", NAMESPACE, "rollout", "restart", f"deployment/{DEPLOYMENT}")
    node.kubectl(
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        f"deployment/{DEPLOYMENT}",
        "--timeout=180s",
        timeout=200,
    )
    rollout_seconds = time.monotonic() - restarted
    rollout_done = time.monotonic() - load.started_at
    result = load.join()
    webhook.wait_available()
    after = {pod["metadata"]["uid"] for pod in webhook.ready_pods()}
    missing = result.without_credentials()
    print(
        f"\nrolling restart: {len(result.created)} Pods created in 60 s "
        f"({len(result.errors)} create errors, {result.late} late), rollout took "
        f"{rollout_seconds:.1f} s, {len(missing)} without credentials "
        f"({_webhook_call_failures(node) - failures_before} failed webhook calls in the "
        "API server's log)"
    )
    assert rollout_done < 60, f"the rollout ended {rollout_done:.0f} s into a 60 s load"
    assert not before & after, "the rollout did not replace the replicas"
    assert not result.errors, result.errors[:5]
    assert len(result.created) == 1200
    assert missing == [], f"{len(missing)} of {len(result.created)} Pods lack credentials"


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _pod_ips(webhook: Deployed) -> dict[str, str]:
    return {pod["metadata"]["name"]: pod["status"]["podIP"] for pod in webhook.ready_pods()}


def test_certificate_rotation_through_the_secret(webhook: Deployed, node: Node) -> None:
    """tools/deploy/self-signed.sh again (a new CA, the old one kept in the caBundle), applied:
    the kubelet swaps the Secret volume's symlink, each replica serves the new certificate on
    new handshakes without a restart, and no admission fails meanwhile."""
    ns = _namespace(node, "rotation")
    replicas = _pod_ips(webhook)
    old_pem = (webhook.generated / "tls.crt").read_bytes()
    old = _der(old_pem)
    for ip in replicas.values():
        assert webhook.served_certificate(ip) == old
    failures_before = _webhook_call_failures(node)
    load = PodLoad(node.admin, ns.name, "app", rate=5, seconds=40, prefix="rotation").start()
    webhook.self_signed()
    webhook.apply()
    new_pem = (webhook.generated / "tls.crt").read_bytes()
    assert new_pem != old_pem
    new = _der(new_pem)
    swapped = time.monotonic()
    wait_until(
        lambda: all(webhook.served_certificate(ip) == new for ip in replicas.values()),
        timeout=120,
        what="the new certificate served by every replica",
    )
    print(
        f"\ncertificate rotation: both replicas serve the new certificate "
        f"{time.monotonic() - swapped:.1f} s after the apply"
    )
    result = load.join()
    missing = result.without_credentials()
    print(
        f"certificate rotation: {len(result.created)} Pods created, {len(missing)} without "
        f"credentials, {_webhook_call_failures(node) - failures_before} failed webhook calls"
    )
    # Same Pods, no restart: the files were reloaded.
    assert _pod_ips(webhook) == replicas
    for pod in webhook.ready_pods():
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    secret = node.admin.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}")
    assert secret["type"] == "kubernetes.io/tls"
    assert not result.errors, result.errors[:5]
    assert missing == []
    assert _webhook_call_failures(node) == failures_before


def _container_id(pod: dict[str, Any]) -> str:
    (status,) = pod["status"]["containerStatuses"]
    runtime, _, container = status["containerID"].partition("://")
    assert runtime == "containerd"
    return container


def _sent_at(name: str, rate: float = 10) -> float:
    """When PodLoad sent the Pod, in seconds from its start (its index over the rate)."""
    return int(name.rsplit("-", 1)[1]) / rate


def test_a_replica_killed_with_sigkill(webhook: Deployed, node: Node) -> None:
    """SIGKILL to one replica's process: the other replica keeps admitting, the kubelet
    restarts the container, the Deployment is Available again."""
    ns = _namespace(node, "sigkill")
    victim, survivor = webhook.ready_pods()
    load = PodLoad(node.admin, ns.name, "app", rate=10, seconds=30, prefix="sigkill").start()
    time.sleep(5)
    killed_at = time.monotonic() - load.started_at
    node.ctr("tasks", "kill", "--signal", "SIGKILL", _container_id(victim))
    # While the victim is down, admissions go on through the survivor.
    name = victim["metadata"]["name"]

    def restarted() -> bool:
        pod = node.admin.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
        (status,) = pod["status"].get("containerStatuses") or [{}]
        return status.get("restartCount", 0) >= 1 and status.get("ready") is True

    wait_until(restarted, timeout=120, what=f"{name} restarted and ready")
    recovered_at = time.monotonic() - load.started_at
    result = load.join()
    webhook.wait_available()
    after_kill = [pod for pod in result.created if _sent_at(pod["metadata"]["name"]) > killed_at]
    missing = result.without_credentials()
    print(
        f"\nSIGKILL: {len(result.created)} Pods created, {len(after_kill)} after the kill; "
        f"{len(missing)} without credentials; the victim was ready again "
        f"{recovered_at - killed_at:.1f} s after the kill"
    )
    survivor_now = node.admin.get(
        f"/api/v1/namespaces/{NAMESPACE}/pods/{survivor['metadata']['name']}"
    )
    assert survivor_now["status"]["containerStatuses"][0]["restartCount"] == 0
    assert not result.errors, result.errors[:5]
    # An admission the API server had already written to the victim when it died is lost: it
    # does not resend a POST whose connection breaks after the write, and no server can answer
    # it (the auditor reports such a Pod). Only Pods sent around the kill may be one (the load's
    # thread can lag its schedule a little, hence the half second before).
    in_flight = [name for name in missing if -0.5 <= _sent_at(name) - killed_at <= 1.0]
    assert missing == in_flight, f"{len(missing)} Pods lack credentials: {missing[:10]}"
    assert len(missing) <= 2, missing
