"""The EKS Pod Identity component (manifests/components/pod-identity, overlays/pod-identity)
and the chart's `podIdentity` values: the CRD, least-privilege RBAC, a two-replica broker with a
PDB, an agent DaemonSet with only NET_ADMIN and NET_BIND_SERVICE, and the webhook switched to
associations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import MANIFESTS, Renderer, of_kind, one, parse
from tests.deploy.tools import REPO

COMPONENT = MANIFESTS / "components" / "pod-identity"
GROUP = "podidentity.pod-identity-webhook.io"
BROKER_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    {
        "apiGroups": [GROUP],
        "resources": ["podidentityassociations"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [GROUP], "resources": ["podidentityassociations/status"], "verbs": ["patch"]},
]


def kustomized(renderer: Renderer) -> list[dict[str, Any]]:
    return renderer.kustomize_build(MANIFESTS / "overlays" / "pod-identity")


def charted(renderer: Renderer, *extra: str) -> list[dict[str, Any]]:
    return renderer.helm_template(
        "--set",
        "podIdentity.enabled=true",
        "--set",
        "podIdentity.clusterName=prod",
        *extra,
        namespace="pod-identity-webhook",
    )


def check(objects: list[dict[str, Any]], broker: str, agent: str) -> None:
    crd = one(objects, "CustomResourceDefinition")
    assert crd["spec"]["group"] == GROUP
    deployment = one(objects, "Deployment", broker)
    assert deployment["spec"]["replicas"] == 2
    pdb = [p for p in of_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"] == broker]
    assert pdb[0]["spec"]["minAvailable"] == 1
    broker_role = one(objects, "ClusterRole", broker)
    assert broker_role["rules"] == BROKER_RULES
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "broker"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    daemonset = one(objects, "DaemonSet", agent)
    # Host network, root and NET_ADMIN: not in the webhook's "restricted" namespace.
    assert daemonset["metadata"]["namespace"] == "kube-system"
    (account,) = [a for a in of_kind(objects, "ServiceAccount") if a["metadata"]["name"] == agent]
    assert account["metadata"]["namespace"] == "kube-system"
    assert f"--agent-service-account=kube-system:{agent}" in container["args"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False
    (agent_container,) = pod["containers"]
    assert agent_container["args"][0] == "agent"
    security = agent_container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_BIND_SERVICE"]}
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    (token,) = [v for v in pod["volumes"] if v["name"] == "agent-token"]
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "pod-identity-broker"
    (ca,) = [v for v in pod["volumes"] if v["name"] == "broker-ca"]
    assert "configMap" in ca  # only the CA, never the broker's Secret
    ports = {p["containerPort"] for p in agent_container["ports"]}
    assert ports == {19703, 19705}
    assert not ports & ({2703, 2705, 10248, 10249, 10250, 10256} | set(range(30000, 32768)))
    webhook = next(d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] != broker)
    args = webhook["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--watch-pod-identity-associations=true" in args
    # No Secret access anywhere in the Pod Identity RBAC.
    for role in of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"]


def test_the_kustomize_overlay(renderer: Renderer, kustomize: Path) -> None:
    check(kustomized(renderer), "pod-identity-broker", "pod-identity-agent")


def test_the_chart(renderer: Renderer, helm: Path) -> None:
    objects = charted(renderer)
    check(
        objects,
        "pod-identity-webhook-broker",
        "pod-identity-webhook-agent",
    )


def test_the_chart_needs_a_cluster_name(renderer: Renderer, helm: Path) -> None:
    with pytest.raises(Exception, match="clusterName"):
        renderer.helm_template("--set", "podIdentity.enabled=true", namespace="x")


def test_the_chart_off_by_default(renderer: Renderer, helm: Path) -> None:
    assert not of_kind(renderer.helm_template(namespace="x"), "DaemonSet")


def test_chart_and_component_share_one_crd() -> None:
    chart = REPO / "charts" / "pod-identity-webhook" / "files" / "podidentityassociations.yaml"
    assert yaml.safe_load(chart.read_text(encoding="utf-8")) == yaml.safe_load(
        (COMPONENT / "crd.yaml").read_text(encoding="utf-8")
    )


def test_component_files_the_e2e_tier_applies_stay_plain_kubernetes_yaml() -> None:
    kinds = [o["kind"] for o in parse((COMPONENT / "rbac.yaml").read_text(encoding="utf-8"))]
    assert kinds.count("ClusterRole") == 3


BROKER_ROLE = "arn:aws:iam::444455556666:role/pod-identity-broker"
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"


def _broker_irsa(deployment: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The broker container's environment and its aws-iam-token volume."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    mounts = [m for m in container["volumeMounts"] if m["name"] == "aws-iam-token"]
    assert mounts == [{"name": "aws-iam-token", "mountPath": TOKEN_DIR, "readOnly": True}]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "aws-iam-token"]
    return env, volume["projected"]["sources"][0]["serviceAccountToken"]


def _webhook_skips_its_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    """Why the broker's IRSA is written into its Deployment: the webhook never sees it."""
    (config,) = of_kind(objects, "MutatingWebhookConfiguration")
    expressions = config["webhooks"][0]["namespaceSelector"]["matchExpressions"]
    assert any(e["operator"] == "NotIn" and namespace in e["values"] for e in expressions)


def test_the_broker_irsa_component(renderer: Renderer, kustomize: Path) -> None:
    # A user's overlay next to the others (kustomize refuses absolute roots).
    overlay = renderer.manifests_copy() / "overlays" / "broker-irsa"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["../pod-identity"],
                "components": ["../../components/pod-identity-broker-irsa"],
                # The patch the component's header and the docs tell users to write.
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "pod-identity-broker"},
                        "patch": yaml.safe_dump(
                            [
                                {
                                    "op": "replace",
                                    "path": "/spec/template/spec/containers/0/env/1/value",
                                    "value": BROKER_ROLE,
                                }
                            ]
                        ),
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    objects = renderer.kustomize_build(overlay)
    env, token = _broker_irsa(one(objects, "Deployment", "pod-identity-broker"))
    assert env["AWS_ROLE_ARN"] == BROKER_ROLE
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{TOKEN_DIR}/token"
    assert token == {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}
    _webhook_skips_its_namespace(objects, "pod-identity-webhook")
    # Nothing else changes: the agent and the webhook get no AWS token.
    for name in ("pod-identity-webhook",):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert all(v["name"] != "aws-iam-token" for v in pod["volumes"])


def test_the_chart_broker_role(renderer: Renderer, helm: Path) -> None:
    objects = charted(renderer, "--set", f"podIdentity.broker.roleArn={BROKER_ROLE}")
    env, token = _broker_irsa(one(objects, "Deployment", "pod-identity-webhook-broker"))
    assert env["AWS_ROLE_ARN"] == BROKER_ROLE
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{TOKEN_DIR}/token"
    assert token["audience"] == "sts.amazonaws.com"
    _webhook_skips_its_namespace(objects, "pod-identity-webhook")


def test_the_chart_broker_without_a_role_has_no_web_identity(
    renderer: Renderer, helm: Path
) -> None:
    deployment = one(charted(renderer), "Deployment", "pod-identity-webhook-broker")
    pod = deployment["spec"]["template"]["spec"]
    names = {item["name"] for item in pod["containers"][0]["env"]}
    # The SDK's web-identity provider fails outright on a token file without a role ARN.
    assert not names & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}
    assert all(v["name"] != "aws-iam-token" for v in pod["volumes"])


def test_the_chart_refuses_a_broker_role_that_is_not_a_role_arn(
    renderer: Renderer, helm: Path
) -> None:
    with pytest.raises(Exception, match="roleArn"):
        charted(renderer, "--set", "podIdentity.broker.roleArn=s3-reader")
