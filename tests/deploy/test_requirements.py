"""The issue's requirements, checked on every variant: each kustomize overlay and the chart
with the values that select the same options."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from tests.deploy.rendering import (
    CERT_MANAGER_GROUP,
    MIRROR_ANNOTATION,
    NAME,
    SECRET,
    SKIP_LABEL,
    VARIANTS,
    WEBHOOK_NAME,
    Obj,
    Variant,
    container,
    namespaced,
    of_kind,
    one,
    port_number,
    selects,
)
from webhook.certificates.issuing import service_dns_names, subject_alt_names
from webhook.config import config_from_argv

Render = Callable[[Variant], list[Obj]]

pytestmark = pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])

READ_VERBS = ["get", "list", "watch"]
METRICS_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9999",
    "prometheus.io/scheme": "http",
    "prometheus.io/path": "/metrics",
}


def _deployment(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment")


def _pod_spec(objects: list[Obj]) -> Obj:
    spec: Obj = _deployment(objects)["spec"]["template"]["spec"]
    return spec


def _pod_labels(objects: list[Obj]) -> dict[str, str]:
    labels: dict[str, str] = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    return labels


def _webhook(objects: list[Obj]) -> Obj:
    (hook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    result: Obj = hook
    return result


def _args(objects: list[Obj], namespace: str) -> list[str]:
    args: list[str] = container(_deployment(objects))["args"]
    return [arg.replace("$(POD_NAMESPACE)", namespace) for arg in args]


# --- Deployment ----------------------------------------------------------------------------


def test_deployment_runs_two_replicas_that_never_drop_during_a_rollout(
    variant: Variant, render: Render
) -> None:
    spec = _deployment(render(variant))["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_pods_are_spread_over_zones_and_nodes(variant: Variant, render: Render) -> None:
    objects = render(variant)
    constraints = _pod_spec(objects)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in constraints:
        assert constraint["maxSkew"] == 1
        # A one-node cluster (kind) must still run both replicas.
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert selects(constraint["labelSelector"], _pod_labels(objects))


def test_pods_have_the_system_cluster_critical_priority(variant: Variant, render: Render) -> None:
    assert _pod_spec(render(variant))["priorityClassName"] == "system-cluster-critical"


def test_pods_run_as_non_root_with_the_runtime_default_seccomp_profile(
    variant: Variant, render: Render
) -> None:
    pod = _pod_spec(render(variant))["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert isinstance(pod["runAsUser"], int)
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_has_a_read_only_root_and_no_capabilities(
    variant: Variant, render: Render
) -> None:
    security = container(_deployment(render(variant)))["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_container_declares_requests_and_a_memory_limit(variant: Variant, render: Render) -> None:
    resources = container(_deployment(render(variant)))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]
    # No CPU limit on purpose: throttling would turn into admission latency.
    assert "cpu" not in resources["limits"]


def test_readiness_probes_readyz_and_liveness_probes_healthz_on_the_https_port(
    variant: Variant, render: Render
) -> None:
    spec = container(_deployment(render(variant)))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = spec[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTPS"
        assert port_number(spec, get["port"]) == 8443


def test_container_serves_8443_and_metrics_on_9999(variant: Variant, render: Render) -> None:
    ports = {
        p["name"]: p["containerPort"] for p in container(_deployment(render(variant)))["ports"]
    }
    assert ports == {"https": 8443, "metrics": 9999}


def test_pod_template_is_annotated_for_metrics_scraping(variant: Variant, render: Render) -> None:
    annotations = _deployment(render(variant))["spec"]["template"]["metadata"]["annotations"]
    assert METRICS_ANNOTATIONS.items() <= annotations.items()


def test_webhook_pods_carry_the_skip_label_and_use_the_api(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    assert _pod_labels(objects)[SKIP_LABEL] == "true"
    spec = _pod_spec(objects)
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]


def test_certificates_are_mounted_read_only_from_the_secret(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    spec = _pod_spec(objects)
    mounts = {m["mountPath"]: m for m in container(_deployment(objects))["volumeMounts"]}
    mount = mounts["/etc/webhook/certs"]
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == SECRET
    # The root filesystem is read-only; /tmp is the one writable place.
    assert "/tmp" in mounts


def test_command_line_is_accepted_by_the_webhook(variant: Variant, render: Render) -> None:
    """The rendered args go through the webhook's own flag parser, as in the Pod."""
    objects = render(variant)
    spec = container(_deployment(objects))
    env = {e["name"]: e for e in spec["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    config, wants_help, wants_version = config_from_argv(_args(objects, variant.namespace))
    assert not wants_help
    assert not wants_version
    assert config.port == port_number(spec, "https")
    assert config.metrics_port == port_number(spec, "metrics")
    assert config.namespace == variant.namespace
    assert config.tls_cert == "/etc/webhook/certs/tls.crt"
    assert config.tls_key == "/etc/webhook/certs/tls.key"
    assert config.mutation.annotation_prefix == "eks.amazonaws.com"
    assert config.mutation.token_audience == "sts.amazonaws.com"
    assert config.watch_config_map is variant.config_map


def test_a_stop_fits_in_the_termination_grace_period(variant: Variant, render: Render) -> None:
    """On SIGTERM the webhook serves on for --shutdown-delay while the endpoint removal reaches
    the API servers, then drains for at most its 10 s; the kubelet's SIGKILL must come later,
    and no preStop sleep adds to the delay."""
    objects = render(variant)
    pod = _deployment(objects)["spec"]["template"]["spec"]
    config, _, _ = config_from_argv(_args(objects, variant.namespace))
    limits = config.limits
    assert limits.shutdown_delay >= 5
    assert "lifecycle" not in container(_deployment(objects))
    assert (
        limits.shutdown_delay + limits.shutdown_timeout + 1 <= pod["terminationGracePeriodSeconds"]
    )


# --- Service, PodDisruptionBudget ------------------------------------------------------------


def test_service_sends_443_to_the_https_port_and_exposes_metrics(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    service = one(objects, "Service")
    spec = container(_deployment(objects))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["https"]["port"] == 443
    assert port_number(spec, ports["https"]["targetPort"]) == 8443
    assert ports["metrics"]["port"] == 9999
    assert port_number(spec, ports["metrics"]["targetPort"]) == 9999
    assert selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(objects))
    assert METRICS_ANNOTATIONS.items() <= service["metadata"]["annotations"].items()


def test_disruption_budget_keeps_one_replica(variant: Variant, render: Render) -> None:
    objects = render(variant)
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in budget["spec"]
    assert budget["spec"]["selector"] == _deployment(objects)["spec"]["selector"]
    assert selects(budget["spec"]["selector"], _pod_labels(objects))


# --- MutatingWebhookConfiguration ------------------------------------------------------------


def test_webhook_speaks_v1_and_v1beta1_without_side_effects(
    variant: Variant, render: Render
) -> None:
    hook = _webhook(render(variant))
    assert hook["name"] == WEBHOOK_NAME
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]


def test_webhook_fails_open_with_a_small_timeout_and_is_reinvoked(
    variant: Variant, render: Render
) -> None:
    hook = _webhook(render(variant))
    assert hook["failurePolicy"] == "Ignore"
    # Mutating webhooks run one after another; the API default (10 s) is too much.
    assert hook["timeoutSeconds"] == 5
    assert hook["reinvocationPolicy"] == "IfNeeded"


def test_webhook_calls_the_service_on_443(variant: Variant, render: Render) -> None:
    objects = render(variant)
    service = one(objects, "Service")
    target = _webhook(objects)["clientConfig"]["service"]
    assert target == {
        "name": service["metadata"]["name"],
        "namespace": variant.namespace,
        "path": "/mutate",
        "port": 443,
    }


def test_webhook_skips_system_and_own_namespaces(variant: Variant, render: Render) -> None:
    hook = _webhook(render(variant))
    if variant.upstream:
        # Upstream mutates every namespace; a drop-in migration must keep doing so.
        assert "namespaceSelector" not in hook
        return
    selector = hook["namespaceSelector"]
    for excluded in ("kube-system", variant.namespace):
        assert not selects(selector, {"kubernetes.io/metadata.name": excluded})
    assert selects(selector, {"kubernetes.io/metadata.name": "default"})


def test_webhook_skips_pods_with_the_skip_label_including_its_own(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    selector = _webhook(objects)["objectSelector"]
    assert selector == {"matchExpressions": [{"key": SKIP_LABEL, "operator": "DoesNotExist"}]}
    assert not selects(selector, _pod_labels(objects))
    assert selects(selector, {"app": "anything"})


def test_webhook_skips_mirror_pods_by_match_condition(variant: Variant, render: Render) -> None:
    conditions = _webhook(render(variant))["matchConditions"]
    assert len(conditions) == 1
    expression = conditions[0]["expression"]
    assert MIRROR_ANNOTATION in expression
    assert expression.startswith("!has(object.metadata.annotations) ||")


# --- RBAC ------------------------------------------------------------------------------------


def _ca_bundle_check_rule(objects: list[Obj]) -> Obj:
    """The one rule the caBundle check (--webhook-configuration) needs: get this configuration."""
    return {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": [one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]],
        "verbs": ["get"],
    }


def _rules(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """Every RBAC rule, but the caBundle check's (checked on its own below)."""
    check = _ca_bundle_check_rule(objects)
    return [
        (role, rule)
        for role in of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
        for rule in role["rules"]
        if rule != check
    ]


def test_rbac_only_reads(variant: Variant, render: Render) -> None:
    for role, rule in _rules(render(variant)):
        assert rule["verbs"] == READ_VERBS, role["metadata"]["name"]
        assert rule["apiGroups"] == [""]


def test_cluster_wide_access_is_to_service_accounts_only(variant: Variant, render: Render) -> None:
    """Plus, with the monitoring options, reading the webhook's own configuration."""
    objects = render(variant)
    expected = [[{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": READ_VERBS}]]
    if variant.monitor:
        expected.append([_ca_bundle_check_rule(objects)])
    assert sorted((r["rules"] for r in of_kind(objects, "ClusterRole")), key=str) == sorted(
        expected, key=str
    )


def test_the_ca_bundle_check_runs_exactly_with_the_monitoring_options(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    config, _, _ = config_from_argv(_args(objects, variant.namespace))
    name = one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert config.webhook_configuration == (name if variant.monitor else "")


def test_config_map_access_only_in_config_map_mode_and_own_namespace(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    holders = [role for role, rule in _rules(objects) if "configmaps" in rule["resources"]]
    if not variant.config_map:
        assert holders == []
        assert of_kind(objects, "Role") == []
        return
    (role,) = holders
    assert role["kind"] == "Role"
    assert role["metadata"]["namespace"] == variant.namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": READ_VERBS}]
    binding = one(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == variant.namespace
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_bindings_grant_the_webhook_service_account(variant: Variant, render: Render) -> None:
    objects = render(variant)
    account = one(objects, "ServiceAccount")
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": variant.namespace,
            }
        ]
        role_kind = binding["roleRef"]["kind"]
        one(objects, role_kind, binding["roleRef"]["name"])


def test_nothing_grants_secrets_or_writes(variant: Variant, render: Render) -> None:
    for _, rule in _rules(render(variant)):
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"]
        assert not {"create", "update", "patch", "delete", "*"} & set(rule["verbs"])


# --- namespaces and certificates ---------------------------------------------------------------


def test_every_namespaced_object_is_in_the_webhook_namespace(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    for obj in objects:
        if namespaced(obj):
            assert obj["metadata"]["namespace"] == variant.namespace, obj["kind"]
    namespaces = of_kind(objects, "Namespace")
    if variant.manages_namespace:
        (namespace,) = namespaces
        assert namespace["metadata"]["name"] == variant.namespace
        labels = namespace["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    else:
        assert namespaces == []


def _certificate_chain(objects: list[Obj]) -> tuple[Obj, Obj]:
    """The serving Certificate and the CA Issuer that signs it."""
    serving = one(objects, "Certificate", NAME)
    issuer = one(
        objects, serving["spec"]["issuerRef"]["kind"], serving["spec"]["issuerRef"]["name"]
    )
    return serving, issuer


def test_certificates_match_the_service_names(variant: Variant, render: Render) -> None:
    objects = render(variant)
    names = service_dns_names(one(objects, "Service")["metadata"]["name"], variant.namespace)
    configuration = one(objects, "MutatingWebhookConfiguration")
    if variant.certificates == "cert-manager":
        serving, issuer = _certificate_chain(objects)
        assert serving["spec"]["secretName"] == SECRET
        assert serving["spec"]["dnsNames"] == names
        # The CA Issuer's key pair is a CA certificate made by a self-signed Issuer.
        ca = next(
            c
            for c in of_kind(objects, "Certificate")
            if c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
        )
        assert ca["spec"]["isCA"] is True
        assert one(objects, "Issuer", ca["spec"]["issuerRef"]["name"])["spec"] == {"selfSigned": {}}
        annotations = configuration["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == (
            f"{variant.namespace}/{serving['metadata']['name']}"
        )
        assert "caBundle" not in _webhook(objects)["clientConfig"]
        return
    assert not [o for o in objects if o["apiVersion"].startswith(CERT_MANAGER_GROUP)]
    assert "cert-manager.io/inject-ca-from" not in (
        configuration["metadata"].get("annotations") or {}
    )
    secret = one(objects, "Secret", SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    data: dict[str, Any] = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    bundle = base64.b64decode(_webhook(objects)["clientConfig"]["caBundle"])
    ca_cert = x509.load_pem_x509_certificate(data["ca.crt"])
    assert data["ca.crt"] in bundle
    serving_cert = x509.load_pem_x509_certificate(data["tls.crt"])
    serving_cert.verify_directly_issued_by(ca_cert)
    assert subject_alt_names(data["tls.crt"]) == names
    assert data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----")
