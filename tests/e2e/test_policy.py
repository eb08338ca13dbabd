"""Security teams' controls through the real API server: a policy denial as the kubectl user
sees it, an audited Pod admitted with its warning, and an extension rule's addition stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, WebhookProcess
from tests.e2e.helpers import ROLE_ARN, pod
from tests.e2e.kube import ApiError

pytestmark = pytest.mark.e2e

ALLOWED = "arn:aws:iam::111122223333:role/team-reader"
FORBIDDEN = "arn:aws:iam::999988887777:role/admin"
POLICY = """\
rules:
  - name: enforce-team-roles
    namespaces: ["policy-enforce-*"]
    mode: enforce
    roleArns: ["arn:aws:iam::111122223333:role/team-*"]
  - name: audit-accounts
    namespaces: ["policy-audit-*"]
    mode: audit
    accounts: ["111122223333"]
"""


@pytest.fixture(scope="module")
def policy_webhook(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    webhook = cluster.spawn_webhook("policy", f"--policy={policy}", "--rule=session-name")
    cluster.wait_ready(webhook)
    name = cluster.register(
        cluster.webhook_configuration("pod-identity-webhook-policy", webhook, "policy")
    )
    cluster.wait_mutating("policy", process=webhook)
    yield webhook
    cluster.unregister(name)
    webhook.stop()


def test_an_enforced_rule_rejects_the_pod_with_its_message(
    cluster: Cluster, policy_webhook: WebhookProcess
) -> None:
    ns = cluster.namespace("policy-enforce", webhook="policy")
    ns.service_account("app", {ROLE_ARN: FORBIDDEN})
    with pytest.raises(ApiError) as caught:
        ns.create_pod(pod("denied", service_account="app"))
    error = caught.value
    assert error.status == 403
    message = error.body["message"]
    assert 'admission webhook "pod-identity-webhook.amazonaws.com" denied the request' in message
    assert "policy rule 'enforce-team-roles' (enforce)" in message
    assert FORBIDDEN in message
    assert "change the ServiceAccount's annotations" in message

    ns.service_account("reader", {ROLE_ARN: ALLOWED})
    stored = ns.run(pod("allowed", service_account="reader"))
    env = {e["name"]: e for e in stored["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"]["value"] == ALLOWED
    # The session-name rule added its variable through the same add-only patch.
    assert env["AWS_ROLE_SESSION_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_an_audited_rule_admits_the_pod_with_a_warning(
    cluster: Cluster, policy_webhook: WebhookProcess
) -> None:
    ns = cluster.namespace("policy-audit", webhook="policy")
    ns.service_account("app", {ROLE_ARN: FORBIDDEN})
    body = pod("audited", service_account="app")
    answer = ns.kube.call("POST", f"/api/v1/namespaces/{ns.name}/pods", body)
    assert answer.status == 201
    assert any("policy rule 'audit-accounts' (audit)" in w for w in answer.warnings)
    env = {e["name"]: e.get("value") for e in answer.body["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == FORBIDDEN
