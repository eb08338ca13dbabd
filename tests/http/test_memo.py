"""The decision memo behind /mutate: identical Pods answered alike, each with its own uid, and
never with a decision the sources or a rule have since made stale."""

from __future__ import annotations

from typing import Any

import pytest

from tests.http.conftest import Harness
from tests.http.helpers import metric_value
from tests.support.reviews import PREFIX, ROLE, env_of, make_pod, make_review, patched_pod
from webhook.admission.extensions import Extensions
from webhook.admission.rules import load_rule

pytestmark = pytest.mark.timeout(20)

OTHER_ROLE = "arn:aws:iam::111122223333:role/other"
UIDS = [f"7a1c0b9e-0000-4000-8000-00000000000{i}" for i in range(4)]


def replica(uid: str) -> dict[str, Any]:
    """A ReplicaSet's Pod at admission: no name yet, the same as its siblings."""
    return make_review(make_pod("s3-reader", name=None), uid=uid)


def role_of(review: dict[str, Any], answer: dict[str, Any]) -> str:
    return env_of(patched_pod(review, answer)["spec"]["containers"][0])["AWS_ROLE_ARN"]


async def memo_counts(harness: Harness) -> tuple[float | None, float | None]:
    text = await harness.metrics_text()
    name = "pod_identity_webhook_decision_memo_total"
    return metric_value(text, name, {"result": "hit"}), metric_value(text, name, {"result": "miss"})


async def test_replicas_get_the_same_patch_each_under_its_own_uid(harness: Harness):
    reviews = [replica(uid) for uid in UIDS[:3]]

    answers = [await harness.review(review) for review in reviews]

    assert [a["response"]["uid"] for a in answers] == UIDS[:3]
    assert len({a["response"]["patch"] for a in answers}) == 1
    assert role_of(reviews[2], answers[2]) == ROLE
    assert await memo_counts(harness) == (2.0, 1.0)


async def test_a_service_account_changed_between_two_replicas_applies_to_the_second(
    harness: Harness,
):
    first = replica(UIDS[0])
    assert role_of(first, await harness.review(first)) == ROLE

    harness.store.put_service_account("default", "s3-reader", {f"{PREFIX}/role-arn": OTHER_ROLE})
    second = replica(UIDS[1])

    assert role_of(second, await harness.review(second)) == OTHER_ROLE
    assert await memo_counts(harness) == (0.0, 2.0)


async def test_a_rule_that_edits_its_decision_cannot_reach_the_answers_of_other_pods(
    harness: Harness,
):
    harness.hook.extensions = Extensions(
        rules=(load_rule("tests.rulesdata.sample:tamper_decision"),)
    )
    tampered = replica(UIDS[0])
    env = env_of(patched_pod(tampered, await harness.review(tampered))["spec"]["containers"][0])
    assert "tampered" in env.values()  # the rule's own admission: its author's doing

    harness.hook.extensions = Extensions()  # the rule is removed (a policy reload)
    after = replica(UIDS[1])

    assert role_of(after, await harness.review(after)) == ROLE
    assert (
        "tampered"
        not in env_of(
            patched_pod(after, await harness.review(after))["spec"]["containers"][0]
        ).values()
    )
    assert (await memo_counts(harness))[0] == 1.0  # only the last one came from the memo
