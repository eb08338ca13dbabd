"""The policy and extension rules as the server applies them: answers, metrics, reloads."""

from __future__ import annotations

import dataclasses

from tests.http.conftest import MakeHarness
from tests.http.helpers import metric_value
from tests.support.reviews import ROLE, make_pod, make_review, patched_pod
from webhook.admission.extensions import Extensions
from webhook.admission.policy import parse_policy
from webhook.admission.rules import load_rule

DENY_OTHERS = (
    "rules: [{name: only-s3, namespaces: [default], mode: enforce, roleArns: ['*/other']}]"
)
AUDIT_OTHERS = (
    "rules: [{name: watch-s3, namespaces: [default], mode: audit, roleArns: ['*/other']}]"
)


async def test_an_enforced_policy_denies_with_a_403_status_and_counts_it(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness()
    harness.hook.extensions = Extensions(policy=parse_policy(DENY_OTHERS))
    answer = (await harness.review(make_review(make_pod())))["response"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert ROLE in answer["status"]["message"]
    assert "patch" not in answer
    assert answer["auditAnnotations"]["decision"] == "denied"
    text = await harness.metrics_text()
    assert (
        metric_value(
            text,
            "pod_identity_webhook_policy_violations_total",
            {"rule": "only-s3", "mode": "enforce"},
        )
        == 1
    )
    assert (
        metric_value(
            text, "pod_identity_webhook_admissions_total", {"outcome": "denied", "reason": "policy"}
        )
        == 1
    )


async def test_an_audit_policy_admits_with_a_warning(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    harness.hook.extensions = Extensions(policy=parse_policy(AUDIT_OTHERS))
    review = make_review(make_pod())
    answer = await harness.review(review)
    response = answer["response"]
    assert response["allowed"] is True
    assert any("watch-s3" in warning for warning in response["warnings"])
    assert response["auditAnnotations"]["policy-violations"] == "watch-s3"
    env = patched_pod(review, answer)["spec"]["containers"][0]["env"]
    assert {"name": "AWS_ROLE_ARN", "value": ROLE} in env


async def test_a_policy_reload_takes_effect_on_the_next_request(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    harness.hook.extensions = Extensions(policy=parse_policy(AUDIT_OTHERS))
    assert (await harness.review(make_review(make_pod())))["response"]["allowed"] is True
    harness.hook.extensions = dataclasses.replace(
        harness.hook.extensions, policy=parse_policy(DENY_OTHERS)
    )
    assert (await harness.review(make_review(make_pod())))["response"]["allowed"] is False


async def test_rule_errors_are_counted_and_ignored_by_default(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    harness.hook.extensions = Extensions(rules=(load_rule("tests.rulesdata.sample:explode"),))
    answer = (await harness.review(make_review(make_pod())))["response"]
    assert answer["allowed"] is True
    assert answer["auditAnnotations"]["rule-errors"] == "tests.rulesdata.sample:explode"
    text = await harness.metrics_text()
    assert (
        metric_value(
            text,
            "pod_identity_webhook_rule_errors_total",
            {"rule": "tests.rulesdata.sample:explode"},
        )
        == 1
    )
