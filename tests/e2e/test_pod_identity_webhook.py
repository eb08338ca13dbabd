"""The whole chain through the real API server: the CRD's validation, a Pod whose ServiceAccount
has only an association mutated by the webhook (--watch-pod-identity-associations), the role
policy at admission, and the mutated Pod's own token turned into credentials by the agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, WebhookProcess
from tests.e2e.helpers import CC_AUDIENCE, CC_FULL_URI, CC_TOKEN_FILE, pod
from tests.e2e.kube import ApiError
from tests.e2e.podidentity import GROUP, PodIdentity, role
from tests.e2e.processes import wait_until
from tests.e2e.test_pod_identity_agent import sdk_session

pytestmark = pytest.mark.e2e

POLICY = """\
rules:
  - name: pi-team-roles
    namespaces: ["pi-enforce-*"]
    mode: enforce
    roleArns: ["arn:aws:iam::111122223333:role/team-*"]
"""


@pytest.fixture(scope="module")
def associations_webhook(
    cluster: Cluster, pod_identity: PodIdentity, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    policy = tmp_path_factory.mktemp("pi-policy") / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    webhook = cluster.spawn_webhook(
        "associations",
        "--watch-pod-identity-associations=true",
        f"--policy={policy}",
        "--resync-period=5s",
    )
    cluster.wait_ready(webhook)
    name = cluster.register(
        cluster.webhook_configuration("pod-identity-webhook-associations", webhook, "associations")
    )
    cluster.wait_mutating("associations", process=webhook)
    yield webhook
    cluster.unregister(name)
    webhook.stop()


def association_body(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "PodIdentityAssociation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"serviceAccountName": name, "roleArn": role("team-app"), **spec},
    }


def test_the_crd_refuses_what_the_broker_would(pod_identity: PodIdentity, cluster: Cluster) -> None:
    ns = cluster.namespace("pi-crd", webhook=None)
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{ns.name}/podidentityassociations"
    cases = [
        ({"serviceAccountName": "other"}, "one association per ServiceAccount"),
        ({"roleArn": "arn:aws:iam::1:role/x"}, "must be an IAM role ARN"),
        ({"roleArn": "arn:aws:iam::111122223333:user/x"}, "must be an IAM role ARN"),
        ({"targetRoleArn": "nope"}, "must be an IAM role ARN"),
        ({"externalId": "abc"}, "externalId is only used with targetRoleArn"),
        ({"sessionPolicy": "x" * 2049}, "2048"),
    ]
    for spec, message in cases:
        body = association_body(ns.name, "app", **spec)
        with pytest.raises(ApiError) as caught:
            cluster.admin.request("POST", path, body)
        assert caught.value.status == 422, spec
        assert message in caught.value.message, (spec, caught.value.message)
    cluster.admin.request("POST", path, association_body(ns.name, "app"))
    with pytest.raises(ApiError) as caught:  # a second one for the same ServiceAccount
        cluster.admin.request("POST", path, association_body(ns.name, "app"))
    assert caught.value.status == 409
    table = cluster.admin.get(path, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:4] == ["Name", "ServiceAccount", "Role", "Target"]
    assert "Last Assume" in columns
    assert table["rows"][0]["cells"][:3] == ["app", "app", role("team-app")]


def test_a_pod_with_only_an_association_gets_credentials(
    cluster: Cluster,
    pod_identity: PodIdentity,
    associations_webhook: WebhookProcess,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ns = cluster.namespace("pi-assoc", webhook="associations")
    ns.service_account("app")  # no annotation at all
    ns.service_account("plain")
    pod_identity.associate(ns, "app", role("team-app"))

    def mutated() -> dict[str, Any] | None:
        answer = ns.create_pod(pod("probe", service_account="app"), dry_run=True)
        env = answer["spec"]["containers"][0].get("env") or []
        return (
            answer if any(e["name"] == "AWS_CONTAINER_CREDENTIALS_FULL_URI" for e in env) else None
        )

    wait_until(mutated, timeout=15, what="the association to reach the webhook")
    body = pod("app", service_account="app")
    body["spec"]["nodeName"] = "node-a"
    stored = ns.run(body)
    env = {e["name"]: e.get("value") for e in stored["spec"]["containers"][0]["env"]}
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == CC_FULL_URI
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == CC_TOKEN_FILE
    assert "AWS_ROLE_ARN" not in env
    (volume,) = [v for v in stored["spec"]["volumes"] if v["name"] == "eks-pod-identity-token"]
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == CC_AUDIENCE
    (record,) = associations_webhook.admissions(ns.name)[-1:]
    assert record["role_source"] == "pod-identity-association"

    untouched = ns.run(pod("plain", service_account="plain"))
    assert not untouched["spec"]["containers"][0].get("env")

    # What the kubelet would write into the projected volume, then the SDK in that Pod.
    token = pod_identity.token(
        ns.name, "app", stored, source["audience"], seconds=source["expirationSeconds"]
    )
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(token, encoding="utf-8")
    agent = pod_identity.spawn_agent(pod_identity.broker, pod_identity.agent_token_file("node-a"))
    session = sdk_session(agent.url, token_file, monkeypatch)
    sts = session.client("sts", endpoint_url=pod_identity.sts_url)
    identity = wait_until(sts.get_caller_identity, timeout=15, what="the Pod's credentials")
    uid = stored["metadata"]["uid"]
    assert identity["Arn"] == (
        f"arn:aws:sts::111122223333:assumed-role/team-app/eks-e2e-cluste-app-{uid}"
    )
    print("\nget-caller-identity of a Pod with only an association:", json.dumps(identity["Arn"]))
    agent.process.stop()


def test_the_role_policy_judges_associations_at_admission(
    cluster: Cluster, pod_identity: PodIdentity, associations_webhook: WebhookProcess
) -> None:
    ns = cluster.namespace("pi-enforce", webhook="associations")
    ns.service_account("app")
    pod_identity.associate(ns, "app", "arn:aws:iam::999988887777:role/admin")

    def denied() -> str | None:
        try:
            ns.create_pod(pod("denied", service_account="app"), dry_run=True)
        except ApiError as exc:
            return exc.message
        return None

    message = wait_until(denied, timeout=15, what="the policy to deny the Pod")
    assert "policy rule 'pi-team-roles' (enforce)" in message
    assert "arn:aws:iam::999988887777:role/admin is not allowed" in message
