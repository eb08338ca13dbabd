"""Every series the broker's and the agent's alert rules read is one they export.

The rules of manifests/components/pod-identity-monitoring go through Prometheus' own parser
(tools/promtool's `selectors`). Each series must be in the exposition of the broker's or the
agent's metrics (BrokerMetrics, AgentMetrics, their lost-lines counters), each label a matcher
or a grouping names must be on that series (or be one the scrape adds), and each `outcome` or
`result` a matcher asks for must be one the code can count: `success` or an EKS Auth error code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from tests.monitoring.sources import POD_IDENTITY_RULES, alerts
from tests.monitoring.tools import Exposition, Parsed, exposition, parse_expressions
from webhook.agent.server import AgentMetrics
from webhook.broker.server import BrokerMetrics
from webhook.errors import EKS_AUTH_ERRORS

#: Series the rules read that neither process exports, and where they come from.
EXTERNAL = {"up": "Prometheus records it for every scrape target"}
#: Labels every scraped series gets: the Prometheus Operator's target labels, and `node`, which
#: the agent's PodMonitor adds (the rules group the agent's failures by node).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container", "node"}
#: What the broker counts in `outcome` and the agent in `result`.
ANSWERS = {"success", *EKS_AUTH_ERRORS}
ANSWER_LABELS = {"outcome", "result"}


def _exported() -> Exposition:
    """The broker's and the agent's exposition, each labelled family with one child, so that
    its label names show."""
    text = ""
    for kind in (BrokerMetrics, AgentMetrics):
        registry = CollectorRegistry()
        metrics = kind(registry)
        for value in vars(metrics).values():
            if isinstance(value, MetricWrapperBase) and value._labelnames:
                value.labels(*("probe" for _ in value._labelnames))
        text += generate_latest(registry).decode()
    return exposition(text)


@pytest.fixture(scope="module")
def parsed(selectors: Path) -> dict[str, Parsed]:
    rules = {rule["alert"]: rule["expr"] for rule in alerts(POD_IDENTITY_RULES)}
    return dict(zip(rules, parse_expressions(selectors, list(rules.values())), strict=True))


def test_every_series_read_is_exported(parsed: dict[str, Parsed]) -> None:
    exported = _exported()
    missing = [
        f"{alert}: {selector.metric}"
        for alert, result in parsed.items()
        for selector in result.selectors
        if selector.metric not in exported.names | set(EXTERNAL)
    ]
    assert missing == [], "series the broker and the agent do not export:\n" + "\n".join(missing)


def test_every_label_read_is_on_the_series(parsed: dict[str, Parsed]) -> None:
    exported = _exported()
    problems: list[str] = []
    for alert, result in parsed.items():
        known = TARGET_LABELS.union(
            *(exported.labels.get(s.metric, set()) for s in result.selectors)
        )
        for selector in result.selectors:
            labels = exported.labels.get(selector.metric, set()) | TARGET_LABELS
            problems.extend(
                f"{alert}: {selector.metric} has no label {matcher.label}"
                for matcher in selector.matchers
                if matcher.label not in labels
            )
        problems.extend(
            f"{alert}: groups or matches on {label}, which no series has"
            for label in sorted(set(result.labels) - known)
        )
    assert problems == [], "\n".join(problems)


def test_every_outcome_asked_for_is_one_the_code_counts(parsed: dict[str, Parsed]) -> None:
    asked = {
        (alert, value)
        for alert, result in parsed.items()
        for selector in result.selectors
        for matcher in selector.matchers
        if matcher.label in ANSWER_LABELS
        for value in (matcher.value.split("|") if matcher.op == "=~" else [matcher.value])
    }
    assert asked, "the rules ask for no outcome"
    unknown = sorted(f"{alert}: {value}" for alert, value in asked if value not in ANSWERS)
    assert unknown == [], "\n".join(unknown)
    # The jobs of the component's PodMonitors, and nothing of the webhook's.
    jobs = {
        matcher.value
        for result in parsed.values()
        for selector in result.selectors
        for matcher in selector.matchers
        if matcher.label == "job"
    }
    assert jobs == {"pod-identity-broker", "pod-identity-agent"}
