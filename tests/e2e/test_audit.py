"""The Pod auditor against the real API server (issue 16, items 1 and 6): a Pod admitted while
the webhook was stopped is reported (metric, one Warning Event, log line) and, when a
controller owns it, deleted; an injected Pod and a Pod whose containers are skipped are not
reported. The auditor runs with the RBAC of manifests/components/pod-audit(-delete) only."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.cluster import MANIFESTS, Cluster, Namespace, WebhookProcess, metric_value
from tests.e2e.helpers import (
    ROLE_ARN,
    SKIP_CONTAINERS,
    assert_untouched,
    assert_web_identity,
    container,
    pod,
)
from tests.e2e.kube import load_manifests, object_path
from tests.e2e.processes import wait_until
from tests.support.reviews import ROLE

pytestmark = pytest.mark.e2e

TARGET = "audit-target"
RBAC = [
    MANIFESTS / "components" / "pod-audit" / "rbac.yaml",
    MANIFESTS / "components" / "pod-audit-delete" / "rbac.yaml",
]
METRIC = "pod_identity_webhook_pods_without_credentials"


@pytest.fixture(scope="module")
def auditor(cluster: Cluster) -> Iterator[WebhookProcess]:
    """A webhook process with --audit-pods and --audit-delete-pods, with the components' RBAC
    (taken away again afterwards: the tier checks the base identity cannot read Pods)."""
    objects = [obj for path in RBAC for obj in load_manifests(path)]
    cluster.admin.apply_all(objects)
    process = cluster.spawn_webhook(
        "audit",
        "--audit-pods=true",
        "--audit-delete-pods=true",
        "--audit-delete-interval=100ms",
        "--resync-period=2s",
    )
    try:
        cluster.wait_ready(process)
        yield process
    finally:
        process.stop()
        for obj in objects:
            cluster.admin.delete(object_path(obj))
        wait_until(
            lambda: cluster.webhook_identity.call("GET", "/api/v1/pods").status == 403,
            timeout=10,
            what="the audit RBAC to be gone",
        )


@pytest.fixture(scope="module")
def target(cluster: Cluster) -> Iterator[WebhookProcess]:
    """The webhook that serves the audited namespaces (failurePolicy Ignore); tests stop it."""
    webhook = cluster.spawn_webhook(TARGET)
    name = ""
    try:
        cluster.wait_ready(webhook)
        name = cluster.register(
            cluster.webhook_configuration(f"pod-identity-webhook-{TARGET}", webhook, TARGET)
        )
        cluster.wait_mutating(TARGET, process=webhook)
        yield webhook
    finally:
        if name:
            cluster.unregister(name)
        webhook.stop()


def _events(namespace: Namespace, pod_name: str) -> list[dict[str, Any]]:
    items = namespace.kube.get(f"/api/v1/namespaces/{namespace.name}/events")["items"]
    return [e for e in items if e["involvedObject"]["name"] == pod_name]


def _kubectl_events(cluster: Cluster, namespace: Namespace) -> str:
    """What an operator sees: `kubectl get events` with the kubectl built next to the API
    server (tools/kube builds both, and envtest's assets hold both)."""
    kubectl = cluster.binaries.kube_apiserver.with_name("kubectl")
    assert kubectl.is_file(), f"no kubectl next to {cluster.binaries.kube_apiserver}"
    shown = subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={cluster.workdir / 'admin.kubeconfig'}",
            "-n",
            namespace.name,
            "get",
            "events",
            "--field-selector=reason=MissingCredentials",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    (cluster.workdir / f"events-{namespace.name}.txt").write_text(shown)
    return shown


def _without_credentials(auditor: WebhookProcess, namespace: Namespace) -> float:
    return metric_value(auditor.metrics(), f'{METRIC}{{namespace="{namespace.name}"}}')


def test_a_pod_admitted_while_the_webhook_was_down_is_reported_and_the_others_are_not(
    cluster: Cluster,
    auditor: WebhookProcess,
    target: WebhookProcess,
    make_namespace: Callable[..., Namespace],
) -> None:
    namespace = make_namespace(webhook=TARGET)
    namespace.service_account("app", {ROLE_ARN: ROLE})
    assert_web_identity(namespace.run(pod("injected")))
    skipped = namespace.run(
        pod(
            "skipped",
            containers=[container("app"), container("proxy")],
            annotations={SKIP_CONTAINERS: "app,proxy"},
        )
    )
    assert_untouched(skipped, containers=["app", "proxy"])

    assert target.stop() == 0
    assert_untouched(namespace.run(pod("missed")))

    wait_until(
        lambda: (
            _without_credentials(auditor, namespace) == 1 and len(_events(namespace, "missed")) == 1
        ),
        timeout=20,
        what="the auditor to report the Pod admitted while the webhook was stopped",
    )
    (event,) = _events(namespace, "missed")
    assert event["type"] == "Warning"
    assert event["reason"] == "MissingCredentials"
    assert event["source"]["component"] == "pod-identity-webhook"
    assert f"ServiceAccount {namespace.name}/app calls for role {ROLE}" in event["message"]
    assert "container(s) app run without it" in event["message"]
    assert _events(namespace, "injected") == []
    assert _events(namespace, "skipped") == []
    shown = _kubectl_events(cluster, namespace).splitlines()
    assert len(shown) == 2, shown  # the header and the one Event
    assert shown[1].split()[1:4] == ["Warning", "MissingCredentials", "pod/missed"], shown
    records = wait_until(
        lambda: auditor.log_records("pod_without_credentials", namespace=namespace.name),
        timeout=5,
        what="the auditor's log line",
    )
    assert [record["pod"] for record in records] == ["missed"]

    # Sweeps later: still one Event, still counted, and never deleted (it has no owner).
    wait_until(
        lambda: auditor.log_records("pod_not_deleted", namespace=namespace.name),
        timeout=10,
        what="the auditor to refuse deleting a Pod without an owner",
    )
    assert namespace.stored_pod("missed")["metadata"]["name"] == "missed"
    assert len(_events(namespace, "missed")) == 1
    assert _without_credentials(auditor, namespace) == 1


def test_a_controller_owned_pod_without_credentials_is_deleted_for_recreation(
    auditor: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> None:
    # A namespace no webhook serves is what a stopped webhook with Ignore amounts to.
    namespace = make_namespace(webhook=None)
    namespace.service_account("app", {ROLE_ARN: ROLE})
    owned = pod("owned")
    owned["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d9c7f",
            "uid": "2c4e6f80-0000-4000-8000-000000000001",
            "controller": True,
        }
    ]
    namespace.run(owned)
    wait_until(
        lambda: namespace.kube.call("GET", namespace.pod_path("owned")).status == 404,
        timeout=20,
        what="the auditor to delete the controller-owned Pod",
    )
    (record,) = wait_until(
        lambda: auditor.log_records("pod_deleted_for_credentials", namespace=namespace.name),
        timeout=5,
        what="the auditor's log line",
    )
    assert record["owner"] == "ReplicaSet/web-5d9c7f"
    assert len(_events(namespace, "owned")) == 1
    wait_until(
        lambda: _without_credentials(auditor, namespace) == 0,
        timeout=10,
        what="the deleted Pod to leave the metric",
    )
