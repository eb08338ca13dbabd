"""The certificate-bootstrap variants (overlay and chart): the flags, an optional Secret volume,
and RBAC limited to one Secret and one MutatingWebhookConfiguration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.rendering import MANIFESTS, NAME, NAMESPACE, Obj, Renderer
from webhook.config import config_from_argv


def _one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.fixture(params=["kustomize", "helm"])
def rendered(request: pytest.FixtureRequest, renderer: Renderer) -> list[Obj]:
    if request.param == "kustomize":
        return renderer.kustomize_build(MANIFESTS / "overlays" / "bootstrap")
    return renderer.helm_template("--set", "certificates.mode=bootstrap")


def test_the_deployment_runs_the_webhook_with_cert_bootstrap(rendered: list[Obj]) -> None:
    deployment = _one(rendered, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("$(POD_NAMESPACE)", NAMESPACE) for a in container["args"]]
    config, _, _ = config_from_argv(args)
    assert config.cert_bootstrap
    assert config.tls_secret == "pod-identity-webhook-cert"
    assert (
        config.webhook_configuration
        == _one(rendered, "MutatingWebhookConfiguration")["metadata"]["name"]
    )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    secret_volumes = [v["secret"] for v in volumes.values() if "secret" in v]
    assert secret_volumes == [{**secret_volumes[0], "optional": True}]


def test_rbac_reaches_one_secret_and_one_webhook_configuration(rendered: list[Obj]) -> None:
    configuration = _one(rendered, "MutatingWebhookConfiguration")["metadata"]["name"]
    rules: list[dict[str, Any]] = [
        rule
        for obj in rendered
        if obj["kind"] in ("Role", "ClusterRole")
        for rule in obj.get("rules", [])
    ]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert {tuple(r["verbs"]): r.get("resourceNames") for r in secrets} == {
        ("create",): None,
        ("get", "update"): ["pod-identity-webhook-cert"],
    }
    webhooks = [r for r in rules if "mutatingwebhookconfigurations" in r["resources"]]
    assert webhooks == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [configuration],
            "verbs": ["get", "patch"],
        }
    ]
    secret_role = next(
        o
        for o in rendered
        if o["kind"] == "Role" and any("secrets" in r["resources"] for r in o["rules"])
    )
    assert secret_role["metadata"]["namespace"] == NAMESPACE
    assert NAME in configuration
