"""The monitoring of the EKS Pod Identity broker and agent (components/pod-identity-monitoring,
and the chart's podIdentity values with metrics.*): a PodMonitor next to each workload that
scrapes its metrics port as the job the rules read, the promtool-tested rules, and nothing
else (no RBAC). The objects' schemas are checked by the dry runs of test_against_apiserver.py;
the rules' behaviour by tests/monitoring."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.rendering import (
    MANIFESTS,
    NAMESPACE,
    POD_IDENTITY_MONITORED_VARIANTS,
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

Render = Callable[[Variant], list[Obj]]
RULES = MANIFESTS / "components" / "pod-identity-monitoring" / "prometheusrule.yaml"
NODE = {
    "action": "replace",
    "sourceLabels": ["__meta_kubernetes_pod_node_name"],
    "targetLabel": "node",
}
#: The workloads each variant names, by the job their PodMonitor gives them.
WORKLOADS = {
    "kustomize": {
        "pod-identity-broker": ("Deployment", "pod-identity-broker"),
        "pod-identity-agent": ("DaemonSet", "pod-identity-agent"),
    },
    "helm": {
        "pod-identity-broker": ("Deployment", "pod-identity-webhook-broker"),
        "pod-identity-agent": ("DaemonSet", "pod-identity-webhook-agent"),
    },
}
METRICS_PORTS = {"pod-identity-broker": 9990, "pod-identity-agent": 19705}

variants = pytest.mark.parametrize(
    "variant",
    POD_IDENTITY_MONITORED_VARIANTS,
    ids=[v.name for v in POD_IDENTITY_MONITORED_VARIANTS],
)


def _job(monitor: Obj) -> str:
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    job: str = endpoint["relabelings"][0]["replacement"]
    return job


def _pod_identity_monitors(objects: list[Obj]) -> dict[str, Obj]:
    monitors = {_job(m): m for m in of_kind(objects, "PodMonitor")}
    monitors.pop("pod-identity-webhook", None)
    return monitors


@variants
def test_a_pod_monitor_scrapes_each_workload_as_the_job_the_rules_read(
    variant: Variant, render: Render
) -> None:
    objects = render(variant)
    monitors = _pod_identity_monitors(objects)
    assert set(monitors) == {"pod-identity-broker", "pod-identity-agent"}
    for job, monitor in monitors.items():
        kind, name = WORKLOADS[variant.tool][job]
        workload = one(objects, kind, name)
        template = workload["spec"]["template"]
        assert selects(monitor["spec"]["selector"], template["metadata"]["labels"]), job
        # A PodMonitor selects Pods of its own namespace: the agent's is in kube-system.
        assert monitor["metadata"]["namespace"] == workload["metadata"]["namespace"]
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert port_number(container(workload), endpoint["port"]) == METRICS_PORTS[job]
        assert endpoint["path"] == "/metrics"
        assert endpoint["scheme"] == "http"
        job_label = {"action": "replace", "targetLabel": "job", "replacement": job}
        expected = [job_label, NODE] if job == "pod-identity-agent" else [job_label]
        assert endpoint["relabelings"] == expected
    # Every other PodMonitor selects the webhook alone, never a broker or agent Pod twice.
    webhook = next(m for m in of_kind(objects, "PodMonitor") if _job(m) == "pod-identity-webhook")
    for kind, name in WORKLOADS[variant.tool].values():
        labels = one(objects, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert not selects(webhook["spec"]["selector"], labels)


@variants
def test_the_rules_are_the_tested_ones(variant: Variant, render: Render) -> None:
    rules = [
        r
        for r in of_kind(render(variant), "PrometheusRule")
        if "PodIdentityBrokerDown" in json.dumps(r["spec"])
    ]
    assert len(rules) == 1
    assert rules[0]["spec"] == rules_spec(RULES)
    assert rules[0]["metadata"]["namespace"] == NAMESPACE


def test_the_component_adds_monitors_and_rules_only(renderer: Renderer, kustomize: Path) -> None:
    """Least privilege: Prometheus reads the Pods with its own ServiceAccount; the component
    grants nothing."""
    (variant, _) = POD_IDENTITY_MONITORED_VARIANTS
    without = renderer.kustomize_build(renderer.manifests_copy() / "overlays" / "pod-identity")
    rendered = renderer.render(variant)
    added = [
        (o["kind"], o["metadata"]["name"])
        for o in rendered
        if o["kind"] in {"PodMonitor", "PrometheusRule"}
        and o["metadata"]["name"].startswith(("pod-identity-broker", "pod-identity-agent"))
    ]
    assert sorted(added) == [
        ("PodMonitor", "pod-identity-agent"),
        ("PodMonitor", "pod-identity-broker"),
        ("PrometheusRule", "pod-identity-broker"),
    ]
    others = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered
        if (o["kind"], o["metadata"]["name"]) not in set(added)
    }
    webhook_monitoring = {
        ("PodMonitor", "pod-identity-webhook"),
        ("PrometheusRule", "pod-identity-webhook"),
        ("ConfigMap", "pod-identity-webhook-dashboard"),
        ("ClusterRole", "pod-identity-webhook-ca-bundle-check"),
        ("ClusterRoleBinding", "pod-identity-webhook-ca-bundle-check"),
    }
    assert others == {(o["kind"], o["metadata"]["name"]) for o in without} | webhook_monitoring


def _chart(renderer: Renderer, *args: str, release: str = "pod-identity-webhook") -> list[Obj]:
    return renderer.helm_template(
        "--set",
        "podIdentity.enabled=true",
        "--set",
        "podIdentity.clusterName=prod",
        *args,
        release=release,
    )


def test_helm_monitors_follow_the_webhook_scrape_choice_and_its_labels(
    renderer: Renderer, helm: Path
) -> None:
    for kind in ("serviceMonitor", "podMonitor"):
        objects = _chart(
            renderer,
            "--set",
            f"metrics.{kind}.enabled=true",
            "--set",
            f"metrics.{kind}.labels.release=kube-prometheus-stack",
            "--set",
            f"metrics.{kind}.interval=15s",
        )
        monitors = _pod_identity_monitors(objects)
        assert set(monitors) == {"pod-identity-broker", "pod-identity-agent"}, kind
        for monitor in monitors.values():
            assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
            (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
            assert endpoint["interval"] == "15s"
        assert of_kind(objects, "PrometheusRule") == []


def test_helm_rules_keep_the_jobs_and_take_the_runbook_base(renderer: Renderer, helm: Path) -> None:
    objects = _chart(
        renderer,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.runbookBaseURL=https://example.com/piw/blob/v1/",
        "--set",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        release="piw",
    )
    rule = one(objects, "PrometheusRule", "piw-pod-identity-webhook-broker")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    text = json.dumps(rule["spec"], sort_keys=True)
    source = json.dumps(rules_spec(RULES), sort_keys=True)
    assert text == source.replace(
        "docs/runbook.md", "https://example.com/piw/blob/v1/docs/runbook.md"
    )
    # No scrape option on: the rules alone, no monitor.
    assert of_kind(objects, "PodMonitor") == []


def test_helm_agent_monitor_follows_the_agent_namespace(renderer: Renderer, helm: Path) -> None:
    objects = _chart(
        renderer,
        "--set",
        "metrics.podMonitor.enabled=true",
        "--set",
        "podIdentity.agent.namespace=",
    )
    agent = _pod_identity_monitors(objects)["pod-identity-agent"]
    assert agent["metadata"]["namespace"] == NAMESPACE
    assert one(objects, "DaemonSet")["metadata"]["namespace"] == NAMESPACE


def test_helm_renders_none_of_it_without_pod_identity(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(
        "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"
    )
    assert [_job(m) for m in of_kind(objects, "PodMonitor")] == ["pod-identity-webhook"]
    assert [r["metadata"]["name"] for r in of_kind(objects, "PrometheusRule")] == [
        "pod-identity-webhook"
    ]
    assert not of_kind(_chart(renderer), "PodMonitor")
