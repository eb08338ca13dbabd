"""The role policy: every rule form, both modes, the default action, and load errors."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tests.support.reviews import role_arn
from webhook.admission.mutation import Decision
from webhook.admission.policy import PolicyError, evaluate, parse_policy

TEAM_A_ROLE = role_arn("team-a-reader")


def decision(**changes) -> Decision:
    base = Decision(
        patch=(),
        reason="injected",
        method="sts_web_identity",
        role_source="service-account",
        role_arn=TEAM_A_ROLE,
        namespace="team-a",
        name="app",
        entry=None,
        notes=(),
        audience="sts.amazonaws.com",
        token_expiration=86400,
    )
    return dataclasses.replace(base, **changes)


def rule(**fields) -> str:
    body = {"name": "r", "namespaces": ["team-a"], "mode": "enforce", **fields}
    return yaml.safe_dump({"rules": [body]})


@pytest.mark.parametrize(
    ("fields", "good", "bad"),
    [
        (
            {"roleArns": ["arn:aws:iam::111122223333:role/team-a-*"]},
            TEAM_A_ROLE,
            "arn:aws:iam::111122223333:role/admin",
        ),
        (
            {"accounts": ["111122223333"]},
            TEAM_A_ROLE,
            "arn:aws:iam::999988887777:role/team-a-reader",
        ),
        ({"partitions": ["aws"]}, TEAM_A_ROLE, "arn:aws-cn:iam::111122223333:role/team-a-reader"),
        ({"accounts": ["111122223333"]}, TEAM_A_ROLE, "not-an-arn"),
    ],
)
def test_role_constraints(fields, good, bad):
    policy = parse_policy(rule(**fields))
    assert evaluate(policy, "team-a", decision(role_arn=good)).violations == ()
    verdict = evaluate(policy, "team-a", decision(role_arn=bad))
    assert verdict.denial is not None
    assert bad in verdict.denial
    assert "policy rule 'r' (enforce) for namespace team-a" in verdict.denial


def test_audience_and_expiration_bounds():
    policy = parse_policy(
        rule(audiences=["sts.amazonaws.com"], tokenExpiration={"min": 3600, "max": 43200})
    )
    assert evaluate(policy, "team-a", decision(token_expiration=7200)).violations == ()
    messages = [
        v.message
        for v in evaluate(
            policy, "team-a", decision(audience="x", token_expiration=86400)
        ).violations
    ]
    assert len(messages) == 2
    assert "audience 'x' is not allowed" in messages[0]
    assert "above the maximum 43200s" in messages[1]
    assert (
        "below the minimum 3600s"
        in evaluate(policy, "team-a", decision(token_expiration=600)).violations[0].message
    )


def test_audit_mode_reports_without_denying():
    policy = parse_policy(rule(mode="audit", accounts=["222233334444"]))
    verdict = evaluate(policy, "team-a", decision())
    assert verdict.denial is None
    assert [v.rule for v in verdict.audited] == ["r"]


def test_globs_select_namespaces_and_every_matching_rule_applies():
    text = """
rules:
  - {name: broad, namespaces: ["team-*"], mode: audit, accounts: ["111122223333"]}
  - {name: narrow, namespaces: ["team-a"], mode: enforce, roleArns: ["arn:aws:iam::111122223333:role/other"]}
"""
    policy = parse_policy(text)
    assert [v.rule for v in evaluate(policy, "team-a", decision()).violations] == ["narrow"]
    assert evaluate(policy, "team-b", decision()).violations == ()
    assert evaluate(policy, "teamb", decision(role_arn="arn:aws:iam::9:role/x")).violations == ()


@pytest.mark.parametrize(
    ("action", "denied", "audited"), [("allow", False, 0), ("audit", False, 1), ("deny", True, 0)]
)
def test_default_action_for_uncovered_namespaces(action, denied, audited):
    policy = parse_policy(f"defaultAction: {action}\n" + rule())
    verdict = evaluate(policy, "elsewhere", decision())
    assert (verdict.denial is not None, len(verdict.audited)) == (denied, audited)


def test_pods_without_credentials_are_not_judged():
    policy = parse_policy("defaultAction: deny\n")
    assert evaluate(policy, "x", decision(method=None, role_arn="")).violations == ()


def test_container_credentials_are_judged_on_audience_and_expiration_only():
    policy = parse_policy(
        rule(roleArns=["arn:aws:iam::1:role/x"], audiences=["pods.eks.amazonaws.com"])
    )
    cc = decision(method="container_credentials", role_arn="", audience="pods.eks.amazonaws.com")
    assert evaluate(policy, "team-a", cc).violations == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "must be a mapping"),
        ("rules: {}", "rules must be a list"),
        ("bogus: 1", "unknown key(s) bogus"),
        ("defaultAction: maybe", "defaultAction must be allow, audit or deny"),
        ("rules: [3]", "rules[0] must be a mapping"),
        ("rules: [{namespaces: [a]}]", "rules[0].name must be a non-empty string"),
        ("rules: [{name: r}]", "namespaces is required"),
        ("rules: [{name: r, namespaces: []}]", "non-empty list"),
        ("rules: [{name: r, namespaces: [a], mode: block}]", "mode must be audit or enforce"),
        ("rules: [{name: r, namespaces: [a], roleArn: [x]}]", "unknown key(s) roleArn"),
        ("rules: [{name: r, namespaces: [a], accounts: [1]}]", "accounts must be a non-empty list"),
        (
            "rules: [{name: r, namespaces: [a], tokenExpiration: {min: 900, max: 600}}]",
            "min 900 is above max 600",
        ),
        (
            "rules: [{name: r, namespaces: [a], tokenExpiration: {min: 1h}}]",
            "whole number of seconds",
        ),
        (
            "rules: [{name: r, namespaces: [a], tokenExpiration: {low: 1}}]",
            "mapping with min and/or max",
        ),
        ("rules: [{name: r, namespaces: [a]}, {name: r, namespaces: [b]}]", "used twice"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_invalid_policies_are_refused_with_the_place(text, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert message in str(caught.value)


def test_an_empty_file_is_an_empty_policy():
    assert parse_policy("").rules == ()


def test_a_single_string_stands_for_a_list_of_one():
    text = "rules: [{name: r, namespaces: team-a, mode: enforce, accounts: '111122223333'}]"
    (only,) = parse_policy(text).rules
    assert (only.namespaces, only.accounts) == (("team-a",), ("111122223333",))
