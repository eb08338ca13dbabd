"""Extension rules: loading, running with limits, and the add-only guardrails."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import jsonpatch
import pytest

from tests.support.reviews import ROLE
from webhook.admission.entries import parse_service_account
from webhook.admission.extensions import Extensions, extend
from webhook.admission.mutation import decide
from webhook.admission.rules import RuleResult, load_rule, rule_patch
from webhook.admission.wire import Pod
from webhook.cli import run
from webhook.config import MutationConfig
from webhook.errors import ConfigError
from webhook.sources.manifests import StaticSources

CONFIG = MutationConfig()
SAMPLE = "tests.rulesdata.sample"


def pod():
    return {
        "metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {
            "serviceAccountName": "app",
            "containers": [{"name": "web", "image": "x"}, {"name": "side", "image": "y"}],
        },
    }


def sources():
    result = StaticSources()
    result.service_accounts["team-a/app"] = parse_service_account(
        {"eks.amazonaws.com/role-arn": ROLE, "eks.amazonaws.com/extra": "v"}, CONFIG
    )
    return result


def run_extend(given, *specs, failure_policy="ignore", timeout=0.25):
    decision = decide(given, namespace="team-a", sources=sources(), config=CONFIG)
    extensions = Extensions(
        rules=tuple(load_rule(f"{SAMPLE}:{s}") for s in specs),
        rule_timeout=timeout,
        failure_policy=failure_policy,
    )
    assert decision.entry is not None
    extras = asyncio.run(extend(given, decision, extensions, config=CONFIG))
    return decision, extras


def test_rule_additions_are_applied_add_only():
    given = pod()
    given["metadata"]["annotations"] = {"eks.amazonaws.com/skip-containers": "side"}
    decision, extras = run_extend(given, "add_team")
    result = jsonpatch.apply_patch(given, [*decision.patch, *extras.patch])
    web, side = result["spec"]["containers"]
    assert web["env"][-1] == {"name": "TEAM", "value": "team-a"}
    assert {"name": "extra", "mountPath": "/extra"} in web["volumeMounts"]
    assert "env" not in side  # skipped containers get nothing from rules either
    assert result["metadata"]["labels"] == {"app": "web", "team": "team-a"}  # existing kept
    assert result["metadata"]["annotations"]["example.com/checked"] == "yes"
    assert [v["name"] for v in result["spec"]["volumes"]] == ["aws-iam-token", "extra"]
    assert extras.warnings == ("tests.rulesdata.sample:add_team: team added",)
    assert all(op["op"] == "add" for op in extras.patch)


def test_a_rule_cannot_change_what_the_webhook_injected():
    given = pod()
    decision, extras = run_extend(given, "sneaky")
    result = jsonpatch.apply_patch(given, [*decision.patch, *extras.patch])
    env = result["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "AWS_ROLE_ARN"] == [ROLE]
    assert len(result["spec"]["containers"][0]["volumeMounts"]) == 1
    assert any("AWS_ROLE_ARN is set by the webhook itself" in w for w in extras.warnings)
    assert any("mount path" in w for w in extras.warnings)


def test_a_rule_sees_a_read_only_copy():
    given = pod()
    _decision, extras = run_extend(given, "touch_pod")
    assert extras.rule_errors
    assert "TypeError" in extras.rule_errors[0][1]
    assert given == pod()


def test_a_rule_can_deny():
    _, extras = run_extend(pod(), "refuse")
    assert extras.denial == f"rule {SAMPLE}:refuse: images from docker.io are not allowed"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("explode", "RuntimeError: boom"),
        ("slow", "timed out"),
        ("slow_async", "timed out"),
        ("wrong_type", "not RuleResult"),
    ],
)
def test_failing_rules_are_ignored_by_default(name, error):
    _decision, extras = run_extend(pod(), name, "add_team", timeout=0.2)
    assert extras.denial is None
    assert extras.rule_errors[0][0] == f"{SAMPLE}:{name}"
    assert error in extras.rule_errors[0][1]
    assert extras.patch  # the other rule still ran
    assert extras.audit["rule-errors"] == f"{SAMPLE}:{name}"


def test_failing_rules_deny_when_fail_closed():
    _, extras = run_extend(pod(), "explode", failure_policy="deny")
    assert extras.denial == f"rule {SAMPLE}:explode failed (RuntimeError: boom)"


def test_async_rules_run():
    given = pod()
    decision, extras = run_extend(given, "async_label")
    assert (
        jsonpatch.apply_patch(given, [*decision.patch, *extras.patch])["metadata"]["labels"][
            "async"
        ]
        == "yes"
    )


def test_rule_patch_creates_missing_maps_and_lists():
    given: Pod = {"spec": {"containers": [{"name": "a"}]}}
    decision = decide(
        given, namespace="team-a", sources=sources(), config=CONFIG, default_service_account="app"
    )
    mutated = jsonpatch.apply_patch(given, list(decision.patch))
    ops, refused = rule_patch(
        mutated,
        decision,
        [
            RuleResult(
                labels={"a": "b"}, annotations={"c/d": "e"}, env=[{"name": "X", "value": "1"}]
            )
        ],
    )
    result = jsonpatch.apply_patch(mutated, ops)
    assert result["metadata"] == {"labels": {"a": "b"}, "annotations": {"c/d": "e"}}
    assert refused == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-rule", "no such rule (installed: session-name)"),
        ("tests.rulesdata.nowhere:x", "cannot load it"),
        (f"{SAMPLE}:missing", "cannot load it"),
        (f"{SAMPLE}:NOT_CALLABLE", "is not callable"),
    ],
)
def test_rules_that_cannot_load_are_start_up_errors(spec, message):
    with pytest.raises(ConfigError) as caught:
        load_rule(spec)
    assert message in str(caught.value)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "sa.yaml").write_text(
        f"kind: ServiceAccount\nmetadata: {{name: app, namespace: team-a, annotations: {{eks.amazonaws.com/role-arn: '{ROLE}'}}}}\n"
    )
    (tmp_path / "pod.yaml").write_text(
        json.dumps({**pod(), "metadata": {"name": "p", "namespace": "team-a"}})
    )
    (tmp_path / "policy.yaml").write_text(
        "rules:\n  - {name: only-readers, namespaces: [team-*], mode: enforce, roleArns: ['arn:aws:iam::*:role/reader-*']}\n"
    )
    return tmp_path


def mutate(files: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    base = ["mutate", "-f", str(files / "pod.yaml"), "--service-accounts", str(files / "sa.yaml")]
    return run([*base, *argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_mutate_fail_on_deny_lets_ci_reject_a_manifest(files):
    status, out, err = mutate(
        files, "--policy", str(files / "policy.yaml"), "-o", "patch", "--fail-on-deny"
    )
    assert status == 3
    assert json.loads(out) == []
    assert "denied: policy rule 'only-readers' (enforce) for namespace team-a" in err
    status, _, _ = mutate(files, "--policy", str(files / "policy.yaml"), "-o", "patch")
    assert status == 0


def test_mutate_review_shows_the_denial(files):
    status, out, _ = mutate(files, "--policy", str(files / "policy.yaml"), "-o", "review")
    response = json.loads(out)["response"]
    assert (status, response["allowed"], response["status"]["code"]) == (0, False, 403)
    assert "patch" not in response
    assert response["auditAnnotations"]["policy-violations"] == "only-readers"


def test_mutate_verbose_agrees_with_a_denial(files):
    status, out, err = mutate(files, "--policy", str(files / "policy.yaml"), "-o", "patch", "-v")
    assert (status, json.loads(out)) == (0, [])
    lines = err.splitlines()
    assert lines[0] == "decision: denied (policy) for ServiceAccount team-a/app"
    assert "patch: 0 operation(s)" in lines


def test_mutate_verbose_counts_what_rules_add(files):
    status, out, err = mutate(files, "--rule", f"{SAMPLE}:add_team", "-o", "patch", "-v")
    assert status == 0
    assert f"patch: {len(json.loads(out))} operation(s)" in err.splitlines()


def test_mutate_runs_rules(files):
    status, out, err = mutate(files, "--rule", f"{SAMPLE}:add_team", "-o", "patch")
    assert status == 0
    assert any(op["value"] == {"name": "TEAM", "value": "team-a"} for op in json.loads(out))
    assert "team added" in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--policy", "missing.yaml"], 1, "--policy missing.yaml"),
        (["--rule", "nope"], 1, "--rule nope: no such rule"),
        (["--rule-failure-policy", "maybe"], 2, "--rule-failure-policy"),
        (["--rule-timeout", "5"], 2, "--rule-timeout"),
        (["--rule-timeout=-1s"], 2, "--rule-timeout"),
        (["--rule-timeout=0"], 2, "--rule-timeout"),
    ],
)
def test_mutate_extension_errors_are_one_line(files, monkeypatch, argv, status, message):
    monkeypatch.chdir(files)
    code, out, err = mutate(files, *argv)
    assert (code, out) == (status, "")
    assert message in err
    assert len(err.strip().splitlines()) == 1
