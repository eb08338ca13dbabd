"""A local STS and a CA bundle (issue 17, part 2) through the real API server: the stored Pod
carries AWS_ENDPOINT_URL_STS, AWS_CA_BUNDLE and a configMap volume the API server accepted; boto3
with that Pod's env, the ConfigMap's key and a token the API server issued for the Pod assumes
the role at moto over HTTPS; ServiceAccount annotations override the flags; and the policy
refuses a redirected STS in production namespaces and audits unexpected bundles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster, Namespace, WebhookProcess
from tests.e2e.helpers import ROLE_ARN, by_name, env, pod
from tests.e2e.kube import ApiError
from tests.localsts import Moto, container_env, kubelet, moto_over_tls, run_sdk
from tests.support.reviews import role_arn

pytestmark = pytest.mark.e2e

ROLE = role_arn("e2e-app")  # the assumed-role ARN moto answers names it

SELECTOR = "local-sts"
CA_FILE = "/var/run/secrets/eks.amazonaws.com/ca-bundle/ca-bundle.pem"
POLICY = """\
rules:
  - name: no-local-sts-in-production
    namespaces: ["local-sts-prod-*"]
    mode: enforce
    stsEndpoints: []
  - name: known-ca-bundles
    namespaces: ["local-sts-audit-*"]
    mode: audit
    caBundles: ["corp-ca/*"]
"""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with moto_over_tls(tmp_path_factory.mktemp("local-sts-moto")) as server:
        yield server


@pytest.fixture(scope="module")
def local_sts_webhook(
    cluster: Cluster, moto: Moto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    policy = tmp_path_factory.mktemp("local-sts") / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    webhook = cluster.spawn_webhook(
        SELECTOR,
        "--aws-default-region=us-east-1",
        f"--sts-endpoint-url={moto.url}",
        "--ca-bundle-config-map=ci-ca",
        f"--policy={policy}",
    )
    cluster.wait_ready(webhook)
    name = cluster.register(
        cluster.webhook_configuration("pod-identity-webhook-local-sts", webhook, SELECTOR)
    )
    cluster.wait_mutating(SELECTOR, process=webhook)
    yield webhook
    cluster.unregister(name)
    webhook.stop()


def _config_map(ns: Namespace, name: str, data: dict[str, str]) -> dict[str, Any]:
    created: dict[str, Any] = ns.kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns.name},
            "data": data,
        }
    )
    return created


def _token(ns: Namespace, stored: dict[str, Any], audience: str) -> str:
    """What the kubelet asks for the projected volume: a token bound to the Pod."""
    spec = {
        "audiences": [audience],
        "expirationSeconds": 3600,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": stored["metadata"]["name"],
            "uid": stored["metadata"]["uid"],
        },
    }
    account = stored["spec"]["serviceAccountName"]
    answer = ns.kube.request(
        "POST",
        f"/api/v1/namespaces/{ns.name}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    ).body
    token: str = answer["status"]["token"]
    return token


def test_the_stored_pod_gets_the_local_sts_and_the_sdk_uses_it(
    cluster: Cluster, local_sts_webhook: WebhookProcess, moto: Moto, tmp_path: Path
) -> None:
    ns = cluster.namespace("local-sts-ci", webhook=SELECTOR)
    ns.service_account("tests", {ROLE_ARN: ROLE})
    config_map = _config_map(ns, "ci-ca", {"ca.crt": moto.ca.read_text()})
    answer = ns.kube.call(
        "POST", f"/api/v1/namespaces/{ns.name}/pods", pod("tests", service_account="tests")
    )
    assert answer.status == 201, answer.body
    # kubectl shows these: the Warning headers of the API server's answer.
    expected = f"STS calls go to {moto.url} (AWS_ENDPOINT_URL_STS, from the flag)"
    assert any(expected in warning for warning in answer.warnings), answer.warnings
    stored = ns.stored_pod("tests")
    container = stored["spec"]["containers"][0]
    assert env(container)[-4:] == [
        ("AWS_ROLE_ARN", ROLE),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
        ("AWS_ENDPOINT_URL_STS", moto.url),
        ("AWS_CA_BUNDLE", CA_FILE),
    ]
    mount = by_name(container["volumeMounts"], "aws-ca-bundle")
    assert mount["readOnly"] is True
    volume = by_name(stored["spec"]["volumes"], "aws-ca-bundle")
    # As stored: the API server defaulted the mode, and kept our one item.
    assert volume["configMap"]["name"] == "ci-ca"
    assert volume["configMap"]["items"] == [{"key": "ca.crt", "path": "ca-bundle.pem"}]

    root = tmp_path / "container"
    audience = by_name(stored["spec"]["volumes"], "aws-iam-token")["projected"]["sources"][0]
    token = _token(ns, stored, audience["serviceAccountToken"]["audience"])
    kubelet(stored, root, token, {"ci-ca": config_map["data"]})
    result = run_sdk(container_env(stored, root), tmp_path)
    assert result.returncode == 0, result.stderr
    identity = json.loads(result.stdout)
    assert identity["Arn"].startswith("arn:aws:sts::111122223333:assumed-role/e2e-app/")


def test_service_account_annotations_override_the_flags(
    cluster: Cluster, local_sts_webhook: WebhookProcess
) -> None:
    ns = cluster.namespace("local-sts-override", webhook=SELECTOR)
    ns.service_account(
        "tests",
        {
            ROLE_ARN: ROLE,
            "eks.amazonaws.com/sts-endpoint-url": "http://localstack.localstack:4566",
            "eks.amazonaws.com/ca-bundle-config-map": "localstack-ca/root.pem",
        },
    )
    stored = ns.run(pod("override", service_account="tests"))
    variables = dict(env(stored["spec"]["containers"][0]))
    assert variables["AWS_ENDPOINT_URL_STS"] == "http://localstack.localstack:4566"
    assert variables["AWS_CA_BUNDLE"] == CA_FILE
    volume = by_name(stored["spec"]["volumes"], "aws-ca-bundle")
    assert volume["configMap"]["name"] == "localstack-ca"
    assert volume["configMap"]["items"] == [{"key": "root.pem", "path": "ca-bundle.pem"}]


def test_production_namespaces_refuse_a_redirected_sts(
    cluster: Cluster, local_sts_webhook: WebhookProcess, moto: Moto
) -> None:
    ns = cluster.namespace("local-sts-prod", webhook=SELECTOR)
    ns.service_account("app", {ROLE_ARN: ROLE})
    with pytest.raises(ApiError) as caught:
        ns.create_pod(pod("redirected", service_account="app"))
    assert caught.value.status == 403
    message = caught.value.body["message"]
    assert "policy rule 'no-local-sts-in-production' (enforce)" in message
    assert f"STS endpoint {moto.url} is not allowed (allowed: none)" in message

    # A ServiceAccount that turns the STS endpoint off passes; the CA bundle is not judged
    # by that rule.
    ns.service_account("real-sts", {ROLE_ARN: ROLE, "eks.amazonaws.com/sts-endpoint-url": ""})
    stored = ns.run(pod("direct", service_account="real-sts"))
    variables = dict(env(stored["spec"]["containers"][0]))
    assert "AWS_ENDPOINT_URL_STS" not in variables
    assert variables["AWS_CA_BUNDLE"] == CA_FILE


def test_an_audited_ca_bundle_is_admitted_with_a_warning(
    cluster: Cluster, local_sts_webhook: WebhookProcess
) -> None:
    ns = cluster.namespace("local-sts-audit", webhook=SELECTOR)
    ns.service_account("app", {ROLE_ARN: ROLE})
    answer = ns.kube.call(
        "POST", f"/api/v1/namespaces/{ns.name}/pods", pod("audited", service_account="app")
    )
    assert answer.status == 201, answer.body
    assert any(
        "policy rule 'known-ca-bundles' (audit)" in w
        and "CA bundle ConfigMap ci-ca/ca.crt is not allowed (allowed: corp-ca/*)" in w
        for w in answer.warnings
    ), answer.warnings
