"""The alert rules of manifests/components/monitoring, unit-tested with the real promtool.

alerts_test.yaml holds `promtool test rules` cases. Each alert is run on its own (one test per
alert, so a failure names the alert), and each must have a case where it fires on a synthetic
failing series and one where it stays quiet on a healthy one. The rules are also checked with
`promtool check rules`, tied to their runbook sections, and shown to make promtool fail when a
threshold is wrong (so the cases can fail at all).
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.sources import CHART_FILES, DASHBOARD, RULES, Obj, alerts, rule_object
from tests.monitoring.tools import REPO

CASES = Path(__file__).resolve().parent / "alerts_test.yaml"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Fix")


ALERT_NAMES = [rule["alert"] for rule in alerts()]


def cases() -> Obj:
    loaded: Obj = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    return loaded


def cases_for(alert: str) -> Obj:
    """alerts_test.yaml reduced to the evaluations of one alert."""
    reduced = cases()
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
    result = run_promtool(promtool, tmp_path, rule_object(), tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_case_names_an_alert_of_the_rules() -> None:
    named = {e["alertname"] for test in cases()["tests"] for e in test["alert_rule_test"]}
    assert named == set(ALERT_NAMES)


def test_the_whole_file_passes_as_operators_would_run_it(promtool: Path, tmp_path: Path) -> None:
    result = run_promtool(promtool, tmp_path, rule_object(), cases())
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
    ],
)
def test_promtool_fails_when_a_rule_is_wrong(
    alert: str, old: str, new: str, promtool: Path, tmp_path: Path
) -> None:
    rules = copy.deepcopy(rule_object())
    (rule,) = [r for g in rules["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    assert old in rule["expr"], rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    result = run_promtool(promtool, tmp_path, rules, cases_for(alert))
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr


def test_rules_pass_promtool_check_with_every_lint(promtool: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_object()["spec"]), encoding="utf-8")
    result = subprocess.run(
        [str(promtool), "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in result.stdout


def test_every_alert_has_a_severity_and_its_explanations() -> None:
    for rule in alerts():
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


def test_chart_ships_the_same_rules_and_dashboard_as_the_component() -> None:
    """The chart cannot read files outside itself, so it holds copies; they must not drift."""
    for source in (RULES, DASHBOARD):
        copy_ = CHART_FILES / source.name
        assert copy_.read_bytes() == source.read_bytes(), (
            f"{copy_} differs from {source}: cp {source.relative_to(REPO)} "
            f"{copy_.relative_to(REPO)}"
        )
