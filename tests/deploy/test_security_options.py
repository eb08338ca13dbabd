"""The security options of issue 16 in the manifests and the chart: the Pod auditor's
least-privilege RBAC (delete only with its own component or value) and the require-credentials
entry, rendered, checked and dry-run against the real API server."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendering import (
    CERT_MANAGER_GROUP,
    NAME,
    Obj,
    Renderer,
    container,
    namespaced,
    of_kind,
    one,
)
from tests.deploy.test_chart import _template
from tests.e2e.cluster import Cluster

REQUIRE_LABEL = "eks.amazonaws.com/require-credentials"
AUDIT_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
DELETE_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}


def _build(renderer: Renderer, *components: str) -> list[Obj]:
    """The cert-manager overlay with `components`, as a user's own overlay would add them."""
    manifests = renderer.manifests_copy()
    directory = manifests / f"with-{'-'.join(components) or 'nothing'}"
    directory.mkdir(exist_ok=True)
    listed = "".join(f"  - ../components/{c}\n" for c in components)
    (directory / "kustomization.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - ../overlays/cert-manager
            """
        )
        + (f"components:\n{listed}" if components else ""),
        encoding="utf-8",
    )
    return renderer.kustomize_build(directory)


def _rules(objects: list[Obj]) -> list[dict[str, Any]]:
    return [rule for role in of_kind(objects, "ClusterRole") for rule in role["rules"]]


def test_the_audit_component_adds_its_flags_and_only_list_watch_and_events(
    renderer: Renderer, kustomize: Path
) -> None:
    plain = _build(renderer)
    audited = _build(renderer, "pod-audit")
    args = container(one(audited, "Deployment"))["args"]
    assert args.count("--audit-pods=true") == 1
    assert "--audit-exclude-namespaces=kube-system,$(POD_NAMESPACE)" in args
    assert not any(a.startswith("--audit-delete-pods") for a in args)
    added = [r for r in _rules(audited) if r not in _rules(plain)]
    assert added == AUDIT_RULES
    binding = one(audited, "ClusterRoleBinding", f"{NAME}-audit")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAME}]
    assert binding["metadata"]["labels"]["app.kubernetes.io/name"] == NAME


def test_deletion_is_its_own_component_with_its_own_permission(
    renderer: Renderer, kustomize: Path
) -> None:
    audited = _build(renderer, "pod-audit")
    deleting = _build(renderer, "pod-audit", "pod-audit-delete")
    assert DELETE_RULE not in _rules(audited)
    assert [r for r in _rules(deleting) if r not in _rules(audited)] == [DELETE_RULE]
    args = container(one(deleting, "Deployment"))["args"]
    assert args.count("--audit-delete-pods=true") == 1
    for obj in deleting:
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == NAME or (
            obj["kind"] == "Secret"
        )


def _entries(objects: list[Obj]) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    return hooks


def _without_requirement(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry minus what the recipe changes: name, failure policy, the label expression."""
    result = copy.deepcopy(entry)
    for key in ("name", "failurePolicy"):
        result.pop(key)
    expressions = result["objectSelector"]["matchExpressions"]
    result["objectSelector"]["matchExpressions"] = [
        e for e in expressions if e["key"] != REQUIRE_LABEL
    ]
    return result


def _check_recipe(first: dict[str, Any], second: dict[str, Any], base: dict[str, Any]) -> None:
    assert first["failurePolicy"] == base["failurePolicy"] == "Ignore"
    assert second["failurePolicy"] == "Fail"
    assert second["name"] == f"require-credentials.{first['name']}"
    assert {"key": REQUIRE_LABEL, "operator": "NotIn", "values": ["true"]} in first[
        "objectSelector"
    ]["matchExpressions"]
    assert {"key": REQUIRE_LABEL, "operator": "In", "values": ["true"]} in second["objectSelector"][
        "matchExpressions"
    ]
    # Everything else, the namespace exclusions above all, is the first entry's.
    assert _without_requirement(first) == _without_requirement(second)
    assert _without_requirement(first) == {
        k: v for k, v in base.items() if k not in ("name", "failurePolicy")
    }


def test_the_require_credentials_component_adds_a_fail_closed_entry_for_labelled_pods(
    renderer: Renderer, kustomize: Path
) -> None:
    (base,) = _entries(_build(renderer))
    first, second = _entries(_build(renderer, "require-credentials"))
    _check_recipe(first, second, base)


def test_the_chart_offers_the_same_options(renderer: Renderer, helm: Path) -> None:
    (base,) = _entries(renderer.helm_template())
    first, second = _entries(renderer.helm_template("--set", "webhook.requireCredentials=true"))
    _check_recipe(first, second, base)
    audited = renderer.helm_template("--set", "audit.enabled=true", namespace="irsa")
    args = container(one(audited, "Deployment"))["args"]
    assert "--audit-pods=true" in args
    assert "--audit-exclude-namespaces=kube-system,irsa" in args
    assert not any(a.startswith("--audit-delete") for a in args)
    assert one(audited, "ClusterRole", f"{NAME}-audit")["rules"] == AUDIT_RULES
    deleting = renderer.helm_template(
        "--set", "audit.enabled=true", "--set", "audit.deletePods=true"
    )
    args = container(one(deleting, "Deployment"))["args"]
    assert {"--audit-delete-pods=true", "--audit-delete-interval=10s"} <= set(args)
    assert one(deleting, "ClusterRole", f"{NAME}-audit")["rules"] == [*AUDIT_RULES, DELETE_RULE]
    assert of_kind(renderer.helm_template("--set", "audit.deletePods=true"), "ClusterRole") == [
        one(renderer.helm_template(), "ClusterRole")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "audit.deleteInterval=soon"], "deleteInterval"),
        (["--set", "audit.excludeNamespaces={Bad_Name}"], "excludeNamespaces"),
        (["--set", "webhook.requireCredentials=yes"], "requireCredentials"),
        (["--set", "audit.unknown=1"], "unknown"),
        (["--set", "clientAuth.caCrt=not a certificate"], "caCrt"),
        (["--set", "clientAuth.allowedNames={a b}"], "allowedNames"),
    ],
)
def test_bad_security_values_are_refused(helm: Path, args: list[str], message: str) -> None:
    answer = _template(helm, *args)
    assert answer.returncode != 0
    assert message in answer.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_the_security_options_pass_server_side_validation(
    source: str, renderer: Renderer, deploy_tools: Any, cluster: Cluster
) -> None:
    from tests.deploy.conftest import _tool
    from tests.deploy.test_against_apiserver import _dry_run_create, _isolated

    _tool(deploy_tools, source)
    if source == "kustomize":
        objects = _build(renderer, "pod-audit", "pod-audit-delete", "require-credentials")
    else:
        objects = renderer.helm_template(
            "--set",
            "audit.enabled=true",
            "--set",
            "audit.deletePods=true",
            "--set",
            "webhook.requireCredentials=true",
            "--set-file",
            f"clientAuth.caCrt={renderer.helm_certs() / 'ca.crt'}",
        )
    namespace = cluster.namespace(f"deploy-dry-run-security-{source}", webhook=None)
    checked = []
    for obj in _isolated(objects, namespace.name, "dry-run-" + namespace.name[-6:]):
        if obj["apiVersion"].startswith(CERT_MANAGER_GROUP + "/"):
            continue
        status, body, warnings = _dry_run_create(cluster, obj)
        assert status == 201, f"{obj['kind']} {obj['metadata']['name']}: {body}"
        assert warnings == [], f"{obj['kind']}: {warnings}"
        checked.append((obj["kind"], namespaced(obj)))
    assert ("MutatingWebhookConfiguration", False) in checked
    assert sum(kind == "ClusterRole" for kind, _ in checked) >= 2


def test_the_documented_client_certificate_overlay_renders_and_passes_validation(
    renderer: Renderer, kustomize: Path, tmp_path: Path
) -> None:
    """manifests/README.md "Authenticating the API server": its overlay, laid out as it says,
    mounts the CA, passes the flags and moves both probes to the plain metrics port."""
    from tests.test_docs import MANIFESTS_README, block

    text = block(
        MANIFESTS_README.read_text(encoding="utf-8"),
        "# my-webhook/kustomization.yaml: the API server's client CA in a ConfigMap, the flags, and",
    )
    (tmp_path / "pod-identity-webhook").symlink_to(renderer.manifests_copy().parent)
    overlay = tmp_path / "my-webhook"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(text, encoding="utf-8")
    (overlay / "apiserver-client-ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    objects = renderer.kustomize_build(overlay)
    deployment = one(objects, "Deployment", NAME)
    spec = container(deployment)
    assert "--client-ca-file=/etc/webhook/client-ca/ca.crt" in spec["args"]
    mount = next(m for m in spec["volumeMounts"] if m["name"] == "client-ca")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (volume,) = (v for v in volumes if v["name"] == "client-ca")
    config_map = one(objects, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert mount["mountPath"] == "/etc/webhook/client-ca"
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["port"] == "metrics"
        assert spec[probe]["httpGet"]["scheme"] == "HTTP"


def test_the_chart_can_require_the_api_servers_client_certificate(
    renderer: Renderer, helm: Path
) -> None:
    ca = renderer.helm_certs() / "ca.crt"
    objects = renderer.helm_template(
        "--set-file",
        f"clientAuth.caCrt={ca}",
        "--set",
        "clientAuth.allowedNames={kube-apiserver-webhook-client,other}",
    )
    deployment = one(objects, "Deployment")
    spec = container(deployment)
    assert "--client-ca-file=/etc/webhook/client-ca/ca.crt" in spec["args"]
    assert "--client-allowed-names=kube-apiserver-webhook-client,other" in spec["args"]
    config_map = one(objects, "ConfigMap", f"{NAME}-client-ca")
    assert config_map["data"]["ca.crt"].strip() == ca.read_text(encoding="utf-8").strip()
    (volume,) = (
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "client-ca"
    )
    assert volume["configMap"]["name"] == f"{NAME}-client-ca"
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["port"] == "metrics"
        assert spec[probe]["httpGet"]["scheme"] == "HTTP"
    plain = container(one(renderer.helm_template(), "Deployment"))
    assert plain["readinessProbe"]["httpGet"]["port"] == "https"
    assert not any(a.startswith("--client") for a in plain["args"])
    assert of_kind(renderer.helm_template(), "ConfigMap") == []
