"""The fail-closed recipe against the real API server (issue 16, item 2): the webhook
configuration of manifests/components/require-credentials (its JSON patch applied to the tier's
configuration) refuses a Pod labelled eks.amazonaws.com/require-credentials=true while the
webhook is down, and still admits every other Pod without it (failurePolicy Ignore). While the
webhook is up, a labelled Pod whose ServiceAccount has no role is denied by the webhook itself,
and each labelled Pod is sent to the webhook once, through the second entry only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.e2e.cluster import MANIFESTS, Cluster, Namespace, WebhookProcess
from tests.e2e.helpers import ROLE_ARN, assert_untouched, assert_web_identity, pod
from tests.e2e.kube import ApiError
from tests.support.reviews import ROLE

pytestmark = pytest.mark.e2e

SELECTOR = "require-credentials"
REQUIRED = {"eks.amazonaws.com/require-credentials": "true"}
COMPONENT = MANIFESTS / "components" / "require-credentials" / "kustomization.yaml"


def _component_patch() -> list[dict[str, Any]]:
    (patch,) = yaml.safe_load(COMPONENT.read_text(encoding="utf-8"))["patches"]
    operations: list[dict[str, Any]] = yaml.safe_load(patch["patch"])
    return operations


@pytest.fixture
def recipe(cluster: Cluster) -> Iterator[WebhookProcess]:
    webhook = cluster.spawn_webhook(SELECTOR)
    name = ""
    try:
        cluster.wait_ready(webhook)
        document = cluster.webhook_configuration(
            "pod-identity-webhook-require-credentials", webhook, SELECTOR
        )
        name = cluster.register(jsonpatch.apply_patch(document, _component_patch()))
        cluster.wait_mutating(SELECTOR, process=webhook)
        yield webhook
    finally:
        if name:
            cluster.unregister(name)
        webhook.stop()


def _refused(namespace: Namespace, body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as refused:
        namespace.create_pod(body)
    return refused.value


def test_labelled_pods_fail_closed_and_the_others_stay_open(
    recipe: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> None:
    namespace = make_namespace(webhook=SELECTOR)
    namespace.service_account("app", {ROLE_ARN: ROLE})
    namespace.service_account("no-role")

    assert_web_identity(namespace.run(pod("labelled", labels=REQUIRED)))
    assert len(recipe.log_records("admission", namespace=namespace.name, pod="labelled")) == 1
    denied = _refused(namespace, pod("no-role", service_account="no-role", labels=REQUIRED))
    assert denied.status == 403
    assert "requires AWS credentials" in denied.message
    assert f"ServiceAccount {namespace.name}/no-role has no role" in denied.message
    assert_untouched(namespace.run(pod("open-no-role", service_account="no-role")))

    assert recipe.stop() == 0

    assert_untouched(namespace.run(pod("open-while-down")))
    refused = _refused(namespace, pod("closed-while-down", labels=REQUIRED))
    assert refused.status == 500
    assert 'failed calling webhook "require-credentials.pod-identity-webhook.amazonaws.com"' in (
        refused.message
    )
    assert namespace.kube.call("GET", namespace.pod_path("closed-while-down")).status == 404
