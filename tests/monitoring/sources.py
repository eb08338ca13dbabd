"""The monitoring files under test: the component's alert rules and Grafana dashboard."""

from __future__ import annotations

from typing import Any

import yaml

from tests.monitoring.tools import REPO

COMPONENT = REPO / "manifests" / "components" / "monitoring"
RULES = COMPONENT / "prometheusrule.yaml"
DASHBOARD = COMPONENT / "dashboard.json"
CHART_FILES = REPO / "charts" / "pod-identity-webhook" / "files"

Obj = dict[str, Any]


def rule_object() -> Obj:
    """The PrometheusRule object of the component."""
    loaded: Obj = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return loaded


def alerts() -> list[Obj]:
    return [
        rule
        for group in rule_object()["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
