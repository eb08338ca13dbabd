"""The tier's own premises: the webhook runs as its own RBAC-limited identity and is healthy."""

from __future__ import annotations

import pytest

from tests.e2e.cluster import (
    WEBHOOK_GROUPS,
    WEBHOOK_NAMESPACE,
    WEBHOOK_USER,
    Cluster,
    WebhookProcess,
    metric_value,
)

pytestmark = pytest.mark.e2e


def test_webhook_identity_is_the_service_account_of_the_manifests(cluster: Cluster) -> None:
    for webhook in cluster.webhooks.values():
        assert f"--kubeconfig={cluster.webhook_kubeconfig}" in webhook.process.argv
    review = cluster.webhook_identity.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    ).body
    user = review["status"]["userInfo"]
    assert user["username"] == WEBHOOK_USER
    assert set(WEBHOOK_GROUPS) <= set(user["groups"])
    assert "system:masters" not in user["groups"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/serviceaccounts", True),
        (
            "GET",
            f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/serviceaccounts/{WEBHOOK_NAMESPACE}",
            True,
        ),
        ("GET", f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/configmaps", True),
        ("GET", "/api/v1/secrets", False),
        ("GET", f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/secrets", False),
        ("GET", "/api/v1/namespaces/default/configmaps", False),
        ("GET", "/api/v1/pods", False),
        ("DELETE", "/api/v1/namespaces/default/serviceaccounts/default", False),
        ("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", False),
    ],
)
def test_webhook_identity_is_rbac_limited(
    cluster: Cluster, method: str, path: str, allowed: bool
) -> None:
    answer = cluster.webhook_identity.call(method, path)
    if allowed:
        assert answer.status == 200, answer.body
    else:
        assert answer.status == 403, answer.body
        assert WEBHOOK_USER in answer.body["message"]


def test_webhook_health_and_metrics(main_webhook: WebhookProcess) -> None:
    """The session's marker Pods went through the real process: its metrics counted them."""
    assert main_webhook.readyz() == (200, "ok")
    text = main_webhook.metrics()
    assert metric_value(text, 'pod_identity_webhook_pod_count{method="sts_web_identity"}') >= 1
    assert metric_value(text, "pod_identity_webhook_used") == 1
