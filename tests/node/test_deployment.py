"""The webhook as the manifests deploy it: Available through its readiness probe, running with
the manifests' security context and least-privilege identity, reached through its Service."""

from __future__ import annotations

import pytest

from tests.node.deployment import NAMESPACE, Deployed
from tests.node.node import Node

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

WEBHOOK_SA = f"system:serviceaccount:{NAMESPACE}:pod-identity-webhook"


def test_deployment_is_available_through_its_readiness_probe(webhook: Deployed) -> None:
    deployment = webhook.deployment()
    conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert conditions["Available"] == "True"
    assert deployment["status"]["readyReplicas"] == 2
    pods = webhook.ready_pods()
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        # Built here, imported into the node's containerd, never pulled.
        assert container["image"] == webhook.image
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        assert status["restartCount"] == 0
        assert pod["spec"]["nodeName"] == "piw-node"


def test_pods_run_as_the_manifests_say(webhook: Deployed, node: Node) -> None:
    """Non-root UID/GID 65532, a read-only root filesystem, no capabilities: as seen from
    inside the running container, not only in the spec."""
    for pod in webhook.ready_pods():
        name = pod["metadata"]["name"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        probe = (
            "import os\n"
            "print(os.getuid(), os.getgid())\n"
            "status = open('/proc/self/status').read().splitlines()\n"
            "print([l.split()[1] for l in status if l.startswith('CapEff')][0])\n"
            "try:\n"
            "    open('/opt/venv/written', 'w')\n"
            "except OSError as error:\n"
            "    print(error.strerror)\n"
        )
        out = node.kubectl("-n", NAMESPACE, "exec", name, "--", "python", "-c", probe)
        assert out.splitlines() == ["65532 65532", "0000000000000000", "Read-only file system"]


def test_the_webhook_identity_reads_service_accounts_and_nothing_else(node: Node) -> None:
    def can(verb: str, resource: str) -> str:
        return node.kubectl(
            "auth", "can-i", verb, resource, f"--as={WEBHOOK_SA}", "--all-namespaces", check=False
        ).strip()

    for verb in ("get", "list", "watch"):
        assert can(verb, "serviceaccounts") == "yes"
    for verb, resource in [
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "serviceaccounts/token"),
        ("update", "serviceaccounts"),
        ("list", "configmaps"),
    ]:
        assert can(verb, resource) == "no", (verb, resource)


def test_the_api_server_calls_the_webhook_through_its_service(
    webhook: Deployed, node: Node
) -> None:
    configuration = node.admin.get(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pod-identity-webhook"
    )
    (hook,) = configuration["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "name": "pod-identity-webhook",
        "namespace": NAMESPACE,
        "path": "/mutate",
        "port": 443,
    }
    # The Service's endpoints are the two ready replicas (what the API server picks from).
    slices = node.admin.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        "?labelSelector=kubernetes.io/service-name=pod-identity-webhook"
    )["items"]
    ready = {
        address
        for item in slices
        for endpoint in item.get("endpoints") or []
        if endpoint["conditions"].get("ready")
        for address in endpoint["addresses"]
    }
    assert ready == {pod["status"]["podIP"] for pod in webhook.ready_pods()}
    # Each admission is logged by the replica that answered it.
    logs = node.kubectl("-n", NAMESPACE, "logs", "-l", "app=pod-identity-webhook", "--tail=-1")
    assert '"event": "admission"' in logs or '"event":"admission"' in logs
