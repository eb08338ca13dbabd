"""The alert rules of the monitoring components (manifests/components), unit-tested with the
real promtool.

Each rules file has its `promtool test rules` cases (sources.CASES). Each alert is run on its
own (one test per alert, so a failure names the alert), and each must have a case where it
fires on a synthetic failing series and one where it stays quiet on a healthy one. The rules
are also checked with `promtool check rules`, tied to their runbook sections, and shown to make
promtool fail when a threshold is wrong (so the cases can fail at all).
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.sources import CASES, CHART_COPIES, Obj, alerts, rule_object
from tests.monitoring.tools import REPO

RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Fix")


#: Every alert, with the rules file it is in.
RULES_OF = {rule["alert"]: path for path in CASES for rule in alerts(path)}
ALERT_NAMES = list(RULES_OF)
RULE_FILES = list(CASES)
RULE_FILE_IDS = [path.parent.name for path in RULE_FILES]
per_rule_file = pytest.mark.parametrize("rules", RULE_FILES, ids=RULE_FILE_IDS)


def cases(rules: Path) -> Obj:
    loaded: Obj = yaml.safe_load(CASES[rules].read_text(encoding="utf-8"))
    return loaded


def cases_for(alert: str) -> Obj:
    """The cases of the alert's rules file reduced to the evaluations of that alert."""
    reduced = cases(RULES_OF[alert])
    tests = []
    for test in reduced["tests"]:
        evaluations = [e for e in test.get("alert_rule_test", []) if e["alertname"] == alert]
        if evaluations:
            tests.append({**test, "alert_rule_test": evaluations})
    reduced["tests"] = tests
    return reduced


def run_promtool(
    promtool: Path, directory: Path, rules: Obj, tests: Obj
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on `tests`, with `rules` (the PrometheusRule's spec) as rules.yaml."""
    (directory / "rules.yaml").write_text(yaml.safe_dump(rules["spec"]), encoding="utf-8")
    (directory / "alerts_test.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
    return subprocess.run(
        [str(promtool), "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
        timeout=120,
    )


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_alert_fires_on_a_failure_and_stays_quiet_when_healthy(
    alert: str, promtool: Path, tmp_path: Path
) -> None:
    tests = cases_for(alert)
    evaluations = [e for test in tests["tests"] for e in test["alert_rule_test"]]
    assert any(e.get("exp_alerts") for e in evaluations), f"no case where {alert} fires"
    assert any(not e.get("exp_alerts") for e in evaluations), f"no case where {alert} is quiet"
    result = run_promtool(promtool, tmp_path, rule_object(RULES_OF[alert]), tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@per_rule_file
def test_every_case_names_an_alert_of_the_rules(rules: Path) -> None:
    named = {e["alertname"] for test in cases(rules)["tests"] for e in test["alert_rule_test"]}
    assert named == {rule["alert"] for rule in alerts(rules)}


@per_rule_file
def test_the_whole_file_passes_as_operators_would_run_it(
    rules: Path, promtool: Path, tmp_path: Path
) -> None:
    result = run_promtool(promtool, tmp_path, rule_object(rules), cases(rules))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        # A threshold ten times too high: the failing case no longer fires.
        ("PodIdentityWebhookErrors", "> 0.01", "> 0.1"),
        # No first-miss term: the replica's first miss goes unnoticed.
        ("PodIdentityWebhookServiceAccountLookupsMissed", " or count(", " and count("),
        # Without the baseline the steady rate of denials would fire.
        ("PodIdentityWebhookPolicyDenialsSpiking", "< 3 *", "< 0 *"),
        # exported_namespace ignored: the Pods' namespace is lost under a ServiceMonitor.
        ("PodIdentityWebhookPodsWithoutCredentials", '"exported_namespace"', '"nothing"'),
        # Client refusals counted as failures: a broker doing its job would page.
        ("PodIdentityBrokerErrors", "|ThrottlingException", "|ThrottlingException|Access.*"),
        # No first-scrape term: a broker losing lines from start-up goes unnoticed.
        ("PodIdentityBrokerLogLinesLost", " or (", " and ("),
        # Not per node: the one node cut off from the broker is hidden by the others.
        ("PodIdentityAgentBrokerUnreachable", "sum by (node)", "sum"),
    ],
)
def test_promtool_fails_when_a_rule_is_wrong(
    alert: str, old: str, new: str, promtool: Path, tmp_path: Path
) -> None:
    rules = copy.deepcopy(rule_object(RULES_OF[alert]))
    (rule,) = [r for g in rules["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    assert old in rule["expr"], rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    result = run_promtool(promtool, tmp_path, rules, cases_for(alert))
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr


@per_rule_file
def test_rules_pass_promtool_check_with_every_lint(
    rules: Path, promtool: Path, tmp_path: Path
) -> None:
    spec = rule_object(rules)["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = subprocess.run(
        [str(promtool), "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rules))} rules found" in result.stdout


def test_alert_names_are_unique_across_the_components() -> None:
    """One runbook section per name: two components must never share an alert name."""
    assert len(ALERT_NAMES) == sum(len(alerts(path)) for path in RULE_FILES)


def test_every_alert_has_a_severity_and_its_explanations() -> None:
    for rule in (rule for path in RULE_FILES for rule in alerts(path)):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"


def _runbook_sections() -> dict[str, str]:
    """`## Heading` sections of docs/runbook.md by their GitHub anchor."""
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = {}
    for match in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL):
        anchor = re.sub(r"[^a-z0-9 -]", "", match.group(1).strip().lower()).replace(" ", "-")
        sections[anchor] = match.group(2)
    return sections


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_every_alert_has_a_runbook_section_with_commands(alert: str) -> None:
    section = _runbook_sections().get(alert.lower())
    assert section is not None, f"docs/runbook.md has no '## {alert}' section"
    for part in RUNBOOK_PARTS:
        assert f"**{part}.**" in section, f"{alert}: no **{part}.** paragraph"
    assert "```sh" in section, f"{alert}: no commands to diagnose with"


def test_chart_ships_the_same_rules_and_dashboard_as_the_components() -> None:
    """The chart cannot read files outside itself, so it holds copies; they must not drift."""
    for source, copy_ in CHART_COPIES.items():
        assert copy_.read_bytes() == source.read_bytes(), (
            f"{copy_} differs from {source}: cp {source.relative_to(REPO)} "
            f"{copy_.relative_to(REPO)}"
        )
