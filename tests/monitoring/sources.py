"""The monitoring files under test: the alert rules of the two components (the webhook's, and
the EKS Pod Identity broker's and agent's), their promtool cases, and the Grafana dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.tools import REPO

COMPONENT = REPO / "manifests" / "components" / "monitoring"
RULES = COMPONENT / "prometheusrule.yaml"
DASHBOARD = COMPONENT / "dashboard.json"
POD_IDENTITY_RULES = (
    REPO / "manifests" / "components" / "pod-identity-monitoring" / "prometheusrule.yaml"
)
CHART_FILES = REPO / "charts" / "pod-identity-webhook" / "files"
HERE = Path(__file__).resolve().parent

#: Each component's rules and the promtool cases that cover them.
CASES = {
    RULES: HERE / "alerts_test.yaml",
    POD_IDENTITY_RULES: HERE / "pod_identity_alerts_test.yaml",
}
#: Each file the chart renders, a copy of a component's (the chart cannot read outside itself).
CHART_COPIES = {
    RULES: CHART_FILES / "prometheusrule.yaml",
    DASHBOARD: CHART_FILES / "dashboard.json",
    POD_IDENTITY_RULES: CHART_FILES / "pod-identity-prometheusrule.yaml",
}

Obj = dict[str, Any]


def rule_object(path: Path = RULES) -> Obj:
    """The PrometheusRule object of a component (the webhook's by default)."""
    loaded: Obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def alerts(path: Path = RULES) -> list[Obj]:
    return [
        rule
        for group in rule_object(path)["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
