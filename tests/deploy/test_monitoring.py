"""The monitoring and NetworkPolicy options (kustomize components, chart values): what each
variant with them renders, and the chart's refusals. The objects' schemas are checked by the
dry runs of test_against_apiserver.py; the rules' behaviour by tests/monitoring."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.rendering import (
    CHART,
    MANIFESTS,
    MONITORED_VARIANTS,
    NAME,
    Obj,
    Renderer,
    Variant,
    container,
    of_kind,
    one,
    port_number,
    rules_spec,
    selects,
)
from webhook.config import config_from_argv

Render = Callable[[Variant], list[Obj]]
RULES = MANIFESTS / "components" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = MANIFESTS / "components" / "monitoring" / "dashboard.json"
JOB = {"action": "replace", "targetLabel": "job", "replacement": NAME}

monitored = pytest.mark.parametrize(
    "variant", MONITORED_VARIANTS, ids=[v.name for v in MONITORED_VARIANTS]
)


def _pod_labels(objects: list[Obj]) -> dict[str, str]:
    labels: dict[str, str] = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


@monitored
def test_one_monitor_scrapes_the_metrics_port_as_the_job_the_rules_read(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    other = "PodMonitor" if variant.monitor == "ServiceMonitor" else "ServiceMonitor"
    assert of_kind(objects, other) == [], "never both: every replica would be scraped twice"
    monitor = one(objects, variant.monitor)
    spec = container(one(objects, "Deployment"))
    if variant.monitor == "ServiceMonitor":
        service = one(objects, "Service")
        assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
        (endpoint,) = monitor["spec"]["endpoints"]
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert port_number(spec, ports[endpoint["port"]]["targetPort"]) == 9999
    else:
        assert selects(monitor["spec"]["selector"], _pod_labels(objects))
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert port_number(spec, endpoint["port"]) == 9999
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "http"
    assert endpoint["relabelings"] == [JOB]
    assert monitor["metadata"]["namespace"] == variant.namespace


@monitored
def test_the_rules_are_the_tested_ones(variant: Variant, render: Render) -> None:
    """With the default names, the rendered rules are exactly the promtool-tested file's."""
    rule = one(render(variant), "PrometheusRule")
    assert rule["spec"] == rules_spec(RULES)
    assert rule["metadata"]["namespace"] == variant.namespace


@monitored
def test_the_dashboard_config_map_is_for_the_grafana_sidecar(
    variant: Variant, render: Render
) -> None:
    (config_map,) = [
        c
        for c in of_kind(render(variant), "ConfigMap")
        if c["metadata"]["name"].endswith("dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == variant.namespace
    (document,) = config_map["data"].values()
    assert json.loads(document) == json.loads(DASHBOARD.read_text(encoding="utf-8"))


@monitored
def test_network_policy_opens_two_ports_to_their_callers_only(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    policy = one(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == variant.namespace
    assert selects(spec["podSelector"], _pod_labels(objects))
    assert spec["policyTypes"] == ["Ingress"]
    webhook, metrics = spec["ingress"]
    pod = container(one(objects, "Deployment"))
    assert [port_number(pod, p["port"]) for p in webhook["ports"]] == [8443]
    assert [port_number(pod, p["port"]) for p in metrics["ports"]] == [9999]
    # The defaults: any address on the webhook port (docs/hardening.md tells how to narrow
    # it), only Prometheus Pods on the metrics port.
    assert webhook["from"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
    assert metrics["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]


def test_helm_rules_follow_the_release_names_and_runbook_base(
    renderer: Renderer, helm: Path
) -> None:
    objects = renderer.helm_template(
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.runbookBaseURL=https://example.com/piw/blob/v1/",
        "--set",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        release="piw",
    )
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    text = json.dumps(rule["spec"], sort_keys=True)
    source = json.dumps(rules_spec(RULES), sort_keys=True)
    assert text == source.replace(
        'deployment=\\"pod-identity-webhook\\"', 'deployment=\\"piw-pod-identity-webhook\\"'
    ).replace("docs/runbook.md", "https://example.com/piw/blob/v1/docs/runbook.md")
    # The job stays the chart's name, which the monitors set whatever the release name.
    assert 'job=\\"pod-identity-webhook\\"' in text
    args = container(one(objects, "Deployment"))["args"]
    assert "--webhook-configuration=piw-pod-identity-webhook" in args


def test_bootstrap_mode_keeps_one_ca_bundle_check(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(
        "--set", "certificates.mode=bootstrap", "--set", "metrics.prometheusRule.enabled=true"
    )
    args = container(one(objects, "Deployment"))["args"]
    assert [a for a in args if a.startswith("--webhook-configuration=")] == [
        f"--webhook-configuration={NAME}"
    ]
    names = [r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")]
    assert f"{NAME}-ca-bundle-check" not in names  # the bootstrap role already reads it


def test_bootstrap_overlay_with_monitoring_repeats_the_flag_harmlessly(
    renderer: Renderer, kustomize: Path
) -> None:
    manifests = renderer.manifests_copy()
    directory = manifests / "variants" / "bootstrap-monitoring"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(
        "resources: [../../overlays/bootstrap]\ncomponents: [../../components/monitoring]\n"
    )
    objects = renderer.kustomize_build(directory)
    args = [
        a.replace("$(POD_NAMESPACE)", "pod-identity-webhook")
        for a in container(one(objects, "Deployment"))["args"]
    ]
    assert args.count(f"--webhook-configuration={NAME}") == 2
    config, _, _ = config_from_argv(args)
    assert config.webhook_configuration == NAME
    assert config.cert_bootstrap


def test_helm_network_policy_takes_the_peers_given(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.10/32",
        "--set",
        "networkPolicy.prometheus[0].namespaceSelector.matchLabels.team=observability",
    )
    webhook, metrics = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert webhook["from"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"team": "observability"}}}]


def test_monitoring_is_off_by_default(renderer: Renderer, helm: Path, kustomize: Path) -> None:
    for objects in (
        renderer.helm_template(),
        renderer.kustomize_build(renderer.manifests_copy() / "overlays" / "cert-manager"),
    ):
        kinds = {o["kind"] for o in objects}
        assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"}
        assert of_kind(objects, "ConfigMap") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.podMonitor.enabled=true",
            ],
            "both true",
        ),
        (
            ["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.apiServer=null"],
            "apiServer",
        ),
        (["--set-json", "networkPolicy.apiServer=[]"], "apiServer"),
        (["--set-json", 'networkPolicy.prometheus=[{"ipBlock":{}}]'], "cidr"),
        (["--set", "metrics.serviceMonitor.interval=30"], "interval"),
        (["--set", "metrics.prometheusRule.runbookBaseURL=docs"], "runbookBaseURL"),
        (["--set", "metrics.dashboard.namespace=Not_A_Namespace"], "namespace"),
        (["--set", "metrics.grafana=true"], "grafana"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value[1::2]),
)
def test_invalid_monitoring_values_are_refused(helm: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [str(helm), "template", NAME, str(CHART), "--namespace", "pod-identity-webhook", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr, result.stderr
