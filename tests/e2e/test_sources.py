"""How the webhook process learns ServiceAccounts from the real API server: a list of several
pages at start-up, and a watch that the server ends and the webhook renews."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.cluster import WEBHOOK_LABEL, Cluster, Namespace, WebhookProcess, unique_name
from tests.e2e.conftest import WATCH_SECONDS
from tests.e2e.helpers import ROLE_ARN, assert_untouched, assert_web_identity, env, pod
from tests.e2e.processes import wait_until
from tests.support.reviews import ROLE

pytestmark = pytest.mark.e2e

PAGE = 500  # webhook.kube.LIST_PAGE_SIZE


@pytest.fixture
def crowded_namespace(cluster: Cluster) -> Namespace:
    """More than a page of ServiceAccounts; the annotated one sorts last of all."""
    name = unique_name("zz-e2e-paging")
    cluster.admin.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {WEBHOOK_LABEL: "paging"}},
        }
    )
    namespace = Namespace(cluster.admin, name)
    for index in range(PAGE + 10):
        namespace.service_account(f"sa-{index:04d}")
    namespace.service_account("zz-last", {ROLE_ARN: ROLE})
    return namespace


@pytest.fixture
def paging_webhook(cluster: Cluster, crowded_namespace: Namespace) -> Iterator[WebhookProcess]:
    """A webhook started after the ServiceAccounts exist, with no live-lookup fallback: what
    it knows, it knows from its start-up list."""
    webhook = cluster.spawn_webhook("paging", "--service-account-lookup-grace-period=0")
    name = None
    try:
        cluster.wait_ready(webhook)
        name = cluster.register(
            cluster.webhook_configuration("pod-identity-webhook-paging", webhook, "paging")
        )
        yield webhook
    finally:
        if name is not None:
            cluster.unregister(name)
        webhook.stop()


def test_the_start_up_list_reads_every_page(
    paging_webhook: WebhookProcess, crowded_namespace: Namespace, cluster: Cluster
) -> None:
    (listed,) = paging_webhook.log_records("listed", source="serviceaccounts")
    assert listed["items"] > PAGE
    manifest = pod("last", service_account="zz-last")
    wait_until(
        lambda: env(crowded_namespace.create_pod(manifest, dry_run=True)["spec"]["containers"][0]),
        timeout=30,
        what="the paging webhook's configuration to take effect with the last ServiceAccount",
    )
    assert_web_identity(crowded_namespace.run(manifest))


def test_changes_arrive_after_the_watch_was_renewed(
    make_namespace: Callable[..., Namespace],
) -> None:
    """The configmap webhook asks for watches of WATCH_SECONDS; the server ends each one and
    the webhook must resume from where it was."""
    ns = make_namespace(webhook="configmap")
    ns.service_account("app")
    assert_untouched(ns.run(pod("before")))
    time.sleep(2.5 * WATCH_SECONDS)  # at least two renewals
    ns.kube.merge_patch(
        f"/api/v1/namespaces/{ns.name}/serviceaccounts/app",
        {"metadata": {"annotations": {ROLE_ARN: ROLE}}},
    )
    wait_until(
        lambda: env(ns.create_pod(pod("probe"), dry_run=True)["spec"]["containers"][0]),
        timeout=10,
        what="an annotation made after the watch renewals to reach the webhook",
    )
    assert_web_identity(ns.run(pod("after")), audience="e2e-flag-audience")
