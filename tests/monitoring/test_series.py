"""Every series the alert rules and the Grafana dashboard read is one the webhook exports.

A real webhook process (`python -m webhook`, ServiceAccounts from a file, no cluster) with a
role policy and a failing extension rule answers a mix of admissions: mutated, not mutated,
denied by the policy, a ServiceAccount it cannot find, a malformed request; its certificate is
then replaced. Its /metrics page is scraped, and every expression of the rules and the
dashboard goes through Prometheus' own parser (tools/promtool's `selectors`). Each series name
must be exported, each label a matcher or a grouping names must be on that series (or be a
label Prometheus adds to every target), and each label value an equality matcher asks for must
have been seen. The few series that come from elsewhere are listed below with their source.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.sources import DASHBOARD, alerts
from tests.monitoring.tools import (
    REPO,
    Exposition,
    Matcher,
    Parsed,
    PromQLError,
    Selector,
    exposition,
    parse_expressions,
)
from tests.support.ports import free_port
from tests.support.reviews import ROLE, role_arn
from webhook.certificates.issuing import make_ca, make_serving_cert

pytestmark = pytest.mark.timeout(120)

#: Series the rules read that no webhook exports, and where they come from.
EXTERNAL = {
    "up": "Prometheus records it for every scrape target",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
}
#: Series a rule reads before the webhook exports them. When one lands, this test fails until
#: it is removed from here, so that its name and labels get checked against the real thing.
PENDING: dict[str, str] = {}
#: Exported families that only get samples from a Kubernetes API, which this test has none of:
#: their names are checked against the exposition's TYPE lines, their labels are not.
NEEDS_A_CLUSTER = {
    "pod_identity_webhook_api_errors_total": "a failed list or watch",
    "pod_identity_webhook_ca_bundle_trusted": "a caBundle check (--webhook-configuration)",
    "pod_identity_webhook_pods_without_credentials": "the Pod auditor (--audit-pods)",
}
#: Labels Prometheus (or the Prometheus Operator's relabelling) adds to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
#: Grafana's built-in variables, replaced by what Grafana would put there.
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

LOCKED_ROLE = role_arn("admin")
SERVICE_ACCOUNTS = f"""\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: s3-reader
  namespace: default
  annotations:
    eks.amazonaws.com/role-arn: {ROLE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: plain
  namespace: default
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: admin
  namespace: locked
  annotations:
    eks.amazonaws.com/role-arn: {LOCKED_ROLE}
"""
POLICY = """\
rules:
  - name: locked-down
    namespaces: [locked]
    mode: enforce
    roleArns: ["arn:aws:iam::111122223333:role/locked-*"]
"""
BROKEN_RULE = """\
def broken(request):
    raise RuntimeError("this rule always fails")
"""


# --- the webhook process --------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    port: int
    metrics_port: int
    context: ssl.SSLContext
    directory: Path

    def post(self, body: bytes) -> int:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=10
        )
        try:
            headers = {"Content-Type": "application/json"}
            connection.request("POST", "/mutate", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def review(self, namespace: str, service_account: str) -> int:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": namespace},
            "spec": {
                "serviceAccountName": service_account,
                "containers": [{"name": "app", "image": "app:1"}],
            },
        }
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"uid-{namespace}-{service_account}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": "CREATE",
                "object": pod,
            },
        }
        return self.post(json.dumps(review).encode())

    def scrape(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            assert response.status == 200
            return response.read().decode()
        finally:
            connection.close()

    def ready(self) -> bool:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=2
        )
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()


def _until(predicate: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("webhook")
    ca_cert, ca_key = make_ca()

    def issue() -> None:
        cert, key = make_serving_cert(
            ca_cert, ca_key, dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )
        (directory / "tls.crt").write_bytes(cert)
        (directory / "tls.key").write_bytes(key)

    issue()
    (directory / "service-accounts.yaml").write_text(SERVICE_ACCOUNTS, encoding="utf-8")
    (directory / "policy.yaml").write_text(POLICY, encoding="utf-8")
    (directory / "broken_rule.py").write_text(BROKEN_RULE, encoding="utf-8")
    port, metrics_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "webhook",
        "--in-cluster=false",
        f"--port={port}",
        f"--metrics-port={metrics_port}",
        f"--tls-cert={directory / 'tls.crt'}",
        f"--tls-key={directory / 'tls.key'}",
        f"--service-accounts={directory / 'service-accounts.yaml'}",
        f"--policy={directory / 'policy.yaml'}",
        "--rule=broken_rule:broken",
        "--service-account-lookup-grace-period=0",
    ]
    with (directory / "out.log").open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env={"PYTHONPATH": str(directory), "PATH": "/usr/bin:/bin"},
        )
    try:
        context = ssl.create_default_context(cadata=ca_cert.decode())
        running = Running(port, metrics_port, context, directory)

        def ready() -> bool:
            if proc.poll() is not None:
                log = (directory / "out.log").read_text()
                raise AssertionError(f"the webhook exited {proc.returncode}:\n{log}")
            return running.ready()

        _until(ready, "readiness")
        assert running.review("default", "s3-reader") == 200  # mutated
        assert running.review("default", "plain") == 200  # not mutated
        assert running.review("locked", "admin") == 200  # denied (an answer, allowed: false)
        assert running.review("default", "nobody") == 200  # missed ServiceAccount
        assert running.post(b"{not json") == 400  # rejected
        issue()  # a new certificate: reloaded within the reloader's 2 s poll
        _until(
            lambda: (
                'pod_identity_webhook_certificate_reloads_total{result="success"}'
                in running.scrape()
            ),
            "the certificate reload",
        )
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def exported(webhook: Running) -> Exposition:
    return exposition(webhook.scrape())


# --- the expressions ------------------------------------------------------------------------


def _grafana(expression: str) -> str:
    """A dashboard query as Grafana would send it: its variables replaced."""

    def value(match: re.Match[str]) -> str:
        return GRAFANA_INTERVALS.get(match.group(1) or match.group(2), "x")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expression)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_queries() -> list[str]:
    return [
        target["expr"]
        for panel in _panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str]]:
    """(selector, label) of every `label_values(selector, label)` template variable."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert match, f"variable {variable['name']}: {query!r} is not label_values(selector, label)"
        found.append((match.group(1), match.group(2)))
    return found


def all_expressions() -> dict[str, str]:
    """Every expression by where it comes from, Grafana variables replaced."""
    expressions = {f"alert {rule['alert']}": rule["expr"] for rule in alerts()}
    for number, query in enumerate(dashboard_queries()):
        expressions[f"dashboard query {number}: {query}"] = _grafana(query)
    for selector, label in variable_queries():
        expressions[f"dashboard variable label_values({selector}, {label})"] = _grafana(selector)
    return expressions


@pytest.fixture(scope="module")
def parsed(selectors: Path) -> dict[str, Parsed]:
    expressions = all_expressions()
    return dict(
        zip(expressions, parse_expressions(selectors, list(expressions.values())), strict=True)
    )


def test_the_selector_lister_reads_what_prometheus_parses(selectors: Path) -> None:
    """The helper the checks below rely on, on an expression whose answer is known."""
    (result,) = parse_expressions(
        selectors,
        ['sum by (reason) (rate(a_total{x="1",y=~"2|3"}[5m])) / on (z) group_left b offset 1h'],
    )
    assert result.selectors == (
        Selector("a_total", (Matcher("x", "=", "1"), Matcher("y", "=~", "2|3"))),
        Selector("b", ()),
    )
    assert result.labels == ("reason", "z")
    with pytest.raises(PromQLError, match="rate"):
        parse_expressions(selectors, ["rate(a_total)"])


def test_every_expression_parses(parsed: dict[str, Parsed]) -> None:
    assert len(parsed) == len(alerts()) + len(dashboard_queries()) + len(variable_queries())
    assert all(p.selectors for p in parsed.values()), "an expression that reads no series"


def test_every_series_read_is_exported(parsed: dict[str, Parsed], exported: Exposition) -> None:
    missing = [
        f"{where}: {selector.metric}"
        for where, result in parsed.items()
        for selector in result.selectors
        if selector.metric not in exported.names
        and selector.metric not in EXTERNAL
        and selector.metric not in PENDING
    ]
    assert missing == [], "series the webhook does not export:\n" + "\n".join(missing)


def test_every_label_read_is_on_the_series(parsed: dict[str, Parsed], exported: Exposition) -> None:
    problems = []
    for where, result in parsed.items():
        ours = [
            s
            for s in result.selectors
            if s.metric in exported.names and s.metric not in NEEDS_A_CLUSTER
        ]
        for selector in ours:
            assert selector.metric in exported.labels, f"{selector.metric}: no sample scraped"
            known = exported.labels[selector.metric] | TARGET_LABELS
            for matcher in selector.matchers:
                if matcher.label not in known:
                    problems.append(f"{where}: {selector.metric} has no label {matcher.label}")
                elif matcher.op == "=" and matcher.label not in TARGET_LABELS:
                    seen = exported.values.get((selector.metric, matcher.label), set())
                    if matcher.value not in seen:
                        problems.append(
                            f"{where}: {selector.metric}{{{matcher.label}={matcher.value!r}}} "
                            f"never seen (seen: {sorted(seen)})"
                        )
        if ours and len(ours) == len(result.selectors):
            carried = set().union(*(exported.labels[s.metric] for s in ours)) | TARGET_LABELS
            problems.extend(
                f"{where}: groups or matches on {label}, which no series has"
                for label in sorted(set(result.labels) - carried)
            )
    assert problems == [], "\n".join(problems)


def test_dashboard_variables_offer_labels_the_series_has(exported: Exposition) -> None:
    for selector, label in variable_queries():
        metric = selector.split("{")[0]
        assert label in exported.labels[metric] | TARGET_LABELS, (selector, label)


def test_external_and_pending_series_are_each_still_read(parsed: dict[str, Parsed]) -> None:
    """Neither list may outlive the expression that needed it."""
    read = {s.metric for result in parsed.values() for s in result.selectors}
    assert set(EXTERNAL) <= read
    assert set(PENDING) <= read
    assert set(NEEDS_A_CLUSTER) <= read


def test_pending_series_are_not_exported_yet(exported: Exposition) -> None:
    """When the auditor lands, this fails: move its series out of PENDING so that the checks
    above cover its name and labels, and fix the alert if the name is not the one expected."""
    assert not set(PENDING) & exported.names
    similar = sorted(
        n for n in exported.names if "without_credentials" in n and n not in NEEDS_A_CLUSTER
    )
    assert similar == [], f"the webhook now exports {similar}; the alert reads {sorted(PENDING)}"


def test_series_needing_a_cluster_are_declared_by_the_webhook(exported: Exposition) -> None:
    assert set(NEEDS_A_CLUSTER) <= exported.names
    assert not set(NEEDS_A_CLUSTER) & set(exported.labels), "samples seen: check their labels"


def test_the_drive_reached_every_outcome_the_rules_read(exported: Exposition) -> None:
    """The label values above were seen because the drive produced them."""
    outcomes = exported.values[("pod_identity_webhook_admissions_total", "outcome")]
    assert {"mutated", "not_mutated", "denied", "rejected"} <= outcomes
    paths = exported.values[("pod_identity_webhook_service_account_lookups_total", "path")]
    assert {"cache", "missed"} <= paths


# --- the dashboard's own shape ----------------------------------------------------------------


def test_dashboard_panels_use_the_datasource_variable_and_fit_the_grid() -> None:
    board = dashboard()
    assert board["uid"] == "pod-identity-webhook"
    names = [v["name"] for v in board["templating"]["list"]]
    assert names[0] == "datasource"
    ids = []
    cells: set[tuple[int, int]] = set()
    for panel in _panels(board["panels"]):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "$job" in target["expr"], f"{panel['title']}: not filtered by $job"
    assert len(ids) == len(set(ids))


def test_chart_dashboard_config_map_carries_the_sidecar_label() -> None:
    """The kustomize component's generator; the chart's template is checked in tests/deploy."""
    kustomization = yaml.safe_load(
        (REPO / "manifests" / "components" / "monitoring" / "kustomization.yaml").read_text()
    )
    (generator,) = kustomization["configMapGenerator"]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    assert generator["files"] == ["pod-identity-webhook.json=dashboard.json"]
