"""Every rendered variant against a real kube-apiserver (the e2e tier's session cluster):
server-side dry-run with strict field validation, the webhook Pod under Pod Security
"restricted", and the self-signed overlay deployed for real with kubectl and removed again.

The cluster has no controller-manager, scheduler or kubelet: objects are validated, admitted
and stored, but no Pod runs (tests/e2e runs the webhook process itself against this API
server). cert-manager's kinds are not served there; they are checked structurally by
test_requirements.py. The Prometheus Operator's kinds (ServiceMonitor, PodMonitor,
PrometheusRule) are: their CRDs, generated from the operator's Go types by
tools/prometheus-operator-crds, are installed first, so those objects get the same strict dry
run. The `cluster` fixture is the e2e tier's, re-exported by conftest.py.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.deploy.rendering import (
    CERT_MANAGER_GROUP,
    MANIFESTS,
    NAME,
    POD_IDENTITY_MONITORED_VARIANTS,
    VARIANTS,
    Obj,
    Renderer,
    Variant,
    namespaced,
    one,
    parse,
    self_signed,
)
from tests.deploy.tools import REPO
from tests.e2e.cluster import Cluster, unique_name
from tests.e2e.kube import ApiError, collection_path, object_path
from tests.e2e.processes import wait_until

pytestmark = pytest.mark.e2e

Render = Callable[[Variant], list[Obj]]
DEPLOY = REPO / "tools" / "deploy" / "deploy.sh"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


def _dry_run_create(cluster: Cluster, obj: Obj) -> tuple[int, Any, list[str]]:
    """POST with dryRun=All and strict field validation: unknown or duplicated fields fail."""
    answer = cluster.admin.call(
        "POST",
        collection_path(obj),
        dict(obj),
        query={"dryRun": "All", "fieldValidation": "Strict", "fieldManager": "deploy-tests"},
    )
    return answer.status, answer.body, answer.warnings


def _isolated(objects: list[Obj], namespace: str, suffix: str) -> list[Obj]:
    """The objects under names no other test uses: namespaced ones moved into `namespace`,
    cluster-scoped ones renamed. References are left alone; the API does not resolve them."""
    moved = []
    for obj in copy.deepcopy(objects):
        metadata = obj["metadata"]
        if namespaced(obj):
            metadata["namespace"] = namespace
        else:
            metadata["name"] = f"{metadata['name']}-{suffix}"
        moved.append(obj)
    return moved


@pytest.fixture(scope="session")
def monitoring_kinds(cluster: Cluster, monitoring_crds: dict[str, Path]) -> set[str]:
    """The monitoring.coreos.com CRDs installed in the session's API server, and served."""
    for kind, path in monitoring_crds.items():
        (crd,) = parse(path.read_text(encoding="utf-8"))
        answer = cluster.admin.call(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
        )
        assert answer.status in (201, 409), f"{kind} CRD: {answer.body}"
        plural = crd["spec"]["names"]["plural"]
        version = next(v["name"] for v in crd["spec"]["versions"] if v["served"])
        collection = f"/apis/{crd['spec']['group']}/{version}/{plural}"

        def served(collection: str = collection) -> bool:
            return bool(cluster.admin.call("GET", collection).status == 200)

        wait_until(served, timeout=30, what=f"{collection} to be served")
    return set(monitoring_crds)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_every_object_passes_server_side_validation(
    variant: Variant, render: Render, cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    served: set[str] = request.getfixturevalue("monitoring_kinds") if variant.monitor else set()
    namespace = cluster.namespace(f"deploy-dry-run-{variant.name}", webhook=None)
    checked, not_served = [], []
    for obj in _isolated(render(variant), namespace.name, "dry-run-" + namespace.name[-6:]):
        if obj["apiVersion"].startswith(CERT_MANAGER_GROUP + "/"):
            not_served.append(obj["kind"])
            continue
        status, body, warnings = _dry_run_create(cluster, obj)
        assert status == 201, f"{obj['kind']} {obj['metadata']['name']}: {body}"
        assert warnings == [], f"{obj['kind']}: {warnings}"
        checked.append(obj["kind"])
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "ClusterRole"} <= set(checked)
    if variant.monitor:
        assert {variant.monitor, "PrometheusRule", "ConfigMap"} <= set(checked)
        assert served <= set(checked) | {"ServiceMonitor", "PodMonitor"}
    if variant.network_policy:
        assert "NetworkPolicy" in checked
    if variant.certificates == "cert-manager":
        assert set(not_served) == {"Issuer", "Certificate"}
    else:
        assert not_served == []


@pytest.mark.parametrize(
    "variant",
    POD_IDENTITY_MONITORED_VARIANTS,
    ids=[v.name for v in POD_IDENTITY_MONITORED_VARIANTS],
)
def test_pod_identity_monitoring_objects_pass_server_side_validation(
    variant: Variant, render: Render, cluster: Cluster, monitoring_kinds: set[str]
) -> None:
    """The broker's and the agent's PodMonitors and rules against the operator's CRDs (the rest
    of those renderings, the CRD of associations among them, is not for a shared API server)."""
    namespace = cluster.namespace(f"deploy-dry-run-{variant.name}", webhook=None)
    objects = [o for o in render(variant) if o["kind"] in monitoring_kinds]
    checked = []
    for obj in _isolated(objects, namespace.name, "dry-run-" + namespace.name[-6:]):
        status, body, warnings = _dry_run_create(cluster, obj)
        assert status == 201, f"{obj['kind']} {obj['metadata']['name']}: {body}"
        assert warnings == [], f"{obj['kind']}: {warnings}"
        checked.append((obj["kind"], obj["metadata"]["name"]))
    # The webhook's PodMonitor and rules, and the broker's and the agent's.
    assert sorted(kind for kind, _ in checked) == [
        "PodMonitor",
        "PodMonitor",
        "PodMonitor",
        "PrometheusRule",
        "PrometheusRule",
    ]


def test_dry_run_refuses_invalid_and_unknown_fields(cluster: Cluster) -> None:
    """The check above is not vacuous on this API server."""
    rule: dict[str, list[str]] = {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": []}
    broken: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": unique_name("deploy-dry-run-broken")},
        "rules": [rule],
    }
    status, _, _ = _dry_run_create(cluster, broken)
    assert status == 422
    unknown = {**broken, "rules": [{**rule, "verbs": ["get"], "verb": ["list"]}]}
    status, body, _ = _dry_run_create(cluster, unknown)
    assert status == 400
    assert "unknown field" in json.dumps(body)


def test_dry_run_checks_monitoring_objects_against_their_crds(
    cluster: Cluster, monitoring_kinds: set[str]
) -> None:
    """The installed CRDs' schemas are enforced: a typo in a ServiceMonitor or a PrometheusRule
    without its expression is refused, as a real cluster with the operator would."""
    namespace = cluster.namespace("deploy-crd-schema", webhook=None)
    monitor: Obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "typo", "namespace": namespace.name},
        "spec": {"selector": {}, "endpoints": [{"prot": "metrics"}]},
    }
    status, body, _ = _dry_run_create(cluster, monitor)
    assert status == 400, body
    assert "unknown field" in json.dumps(body)
    rule: Obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "no-expr", "namespace": namespace.name},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]},
    }
    status, body, _ = _dry_run_create(cluster, rule)
    assert status == 422, body
    assert "expr" in json.dumps(body)
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} == monitoring_kinds


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_webhook_pod_is_admitted_under_pod_security_restricted(
    variant: Variant, render: Render, cluster: Cluster
) -> None:
    """The Deployment's Pod, dry-run created in a namespace enforcing "restricted", with the
    system-cluster-critical priority resolved by the Priority admission plugin."""
    objects = render(variant)
    deployment = one(objects, "Deployment")
    namespace = cluster.namespace(f"deploy-pss-{variant.name}", webhook=None, **RESTRICTED)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace.service_account(account)
    template = copy.deepcopy(deployment["spec"]["template"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "webhook", "namespace": namespace.name},
        "spec": template["spec"],
    }
    status, body, warnings = _dry_run_create(cluster, pod)
    assert status == 201, body
    assert warnings == []
    assert body["spec"]["priority"] == 2000000000
    assert body["spec"]["priorityClassName"] == "system-cluster-critical"


# --- the self-signed overlay, deployed for real ---------------------------------------------


def _wrapper(manifests: Path, namespace: str) -> Path:
    """The self-signed overlay under its own namespace and name prefix, so that it can be
    applied and deleted beside the e2e tier's objects of the same names."""
    directory = manifests / "deploy-test"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: {namespace}
            namePrefix: deploy-test-
            resources:
              - ../overlays/self-signed
            """
        ),
        encoding="utf-8",
    )
    return directory


def _deploy(action: str, overlay: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [
            str(DEPLOY),
            action,
            "--overlay",
            str(overlay),
            "--image",
            "pod-identity-webhook:test",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _stored(cluster: Cluster, obj: Obj) -> Obj | None:
    try:
        stored: Obj = cluster.admin.get(object_path(obj))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return stored


def _admit_through_the_deployed_configuration(
    cluster: Cluster, objects: list[Obj], certs: Path, namespace: str
) -> None:
    """Run the webhook with the Deployment's own arguments and the overlay's certificate, point
    the deployed configuration's Service at it (URL rewrite, caBundle untouched), and check that
    the API server, trusting only that caBundle, gets a Pod mutated by it."""
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    own = ("--port=", "--metrics-port=", "--tls-cert=", "--tls-key=")
    args = [
        arg.replace("$(POD_NAMESPACE)", namespace)
        for arg in container["args"]
        if not arg.startswith(own)
    ]
    webhook = cluster.spawn_webhook(
        f"deployed-{namespace}",
        *args,
        f"--tls-cert={certs / 'tls.crt'}",
        f"--tls-key={certs / 'tls.key'}",
    )
    configuration = one(objects, "MutatingWebhookConfiguration")
    path = object_path(configuration)
    stored = cluster.admin.get(path)
    bundle = stored["webhooks"][0]["clientConfig"]["caBundle"]
    url = f"https://localhost:{webhook.port}/mutate"
    patch = [
        {
            "op": "replace",
            "path": "/webhooks/0/clientConfig",
            "value": {"url": url, "caBundle": bundle},
        }
    ]
    cluster.admin.request("PATCH", path, patch, content_type="application/json-patch+json")
    try:
        target = cluster.namespace("deploy-admitted", webhook=None)
        role = "arn:aws:iam::111122223333:role/deployed"
        target.service_account("app", {"eks.amazonaws.com/role-arn": role})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "through-the-overlay"},
            "spec": {
                "serviceAccountName": "app",
                "containers": [{"name": "app", "image": "app:1"}],
            },
        }

        def mutated() -> bool:
            answer = target.create_pod(pod, dry_run=True)
            env = answer["spec"]["containers"][0].get("env") or []
            return {"name": "AWS_ROLE_ARN", "value": role} in env

        wait_until(mutated, timeout=30, what="a Pod mutated through the deployed configuration")
    finally:
        webhook.stop()  # the configuration goes with the overlay's delete below


def test_self_signed_overlay_deploys_with_kubectl_and_is_removed_again(
    cluster: Cluster, renderer: Renderer, kustomize: Path, tmp_path: Path
) -> None:
    kubectl = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    namespace = unique_name("deploy-test")
    service = f"deploy-test-{NAME}"
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests, ignore=shutil.ignore_patterns("generated"))
    certs = self_signed(
        manifests / "overlays" / "self-signed" / "generated",
        namespace=namespace,
        service=service,
        dns=("localhost",),  # the webhook process below stands in for the Pod at localhost
    )
    overlay = _wrapper(manifests, namespace)
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.workdir / "admin.kubeconfig"),
        "KUSTOMIZE": str(kustomize),
        "KUBECTL": kubectl,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    objects = parse(_deploy("render", overlay, env))
    try:
        _deploy("apply", overlay, env)
        for obj in objects:
            assert _stored(cluster, obj) is not None, f"{obj['kind']} {obj['metadata']['name']}"
        configuration = _stored(cluster, one(objects, "MutatingWebhookConfiguration"))
        secret = _stored(cluster, one(objects, "Secret"))
        deployment = _stored(cluster, one(objects, "Deployment"))
        budget = _stored(cluster, one(objects, "PodDisruptionBudget"))
        assert configuration is not None
        assert secret is not None
        assert deployment is not None
        assert budget is not None
        (hook,) = configuration["webhooks"]
        # What the API server will check when it calls the webhook: the Service's name is in
        # the serving certificate, which the caBundle's CA signed.
        bundle = x509.load_pem_x509_certificates(base64.b64decode(hook["clientConfig"]["caBundle"]))
        served = base64.b64decode(secret["data"]["tls.crt"])
        assert served == (certs / "tls.crt").read_bytes()
        serving = x509.load_pem_x509_certificate(served)
        serving.verify_directly_issued_by(bundle[0])
        target = hook["clientConfig"]["service"]
        names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"{target['name']}.{target['namespace']}.svc" in names.get_values_for_type(
            x509.DNSName
        )
        assert target == {"name": service, "namespace": namespace, "path": "/mutate", "port": 443}
        # Fields of recent API versions survive storage (an older server would drop them).
        assert hook["matchConditions"][0]["name"] == "not-a-mirror-pod"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert all(c["matchLabelKeys"] == ["pod-template-hash"] for c in spread)
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        _admit_through_the_deployed_configuration(cluster, objects, certs, namespace)
    finally:
        _deploy("delete", overlay, env, "--", "--wait=false")
    for obj in objects:
        left = _stored(cluster, obj)
        if obj["kind"] == "Namespace" and left is not None:
            # No namespace controller here: the namespace stays Terminating.
            assert left["status"]["phase"] == "Terminating"
            continue
        assert left is None, f"{obj['kind']} {obj['metadata']['name']} survived the delete"
