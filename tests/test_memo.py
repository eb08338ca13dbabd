"""The decision memo: a Pod seen before gets the decision `decide` would make now, never an old one."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.reviews import ROLE
from tests.test_properties import lowest, pods, service_account_annotations, setups
from webhook.admission import verdicts
from webhook.admission.entries import ConfigMapEntry, parse_service_account
from webhook.admission.memo import DecisionMemo
from webhook.admission.mutation import Decision, decide
from webhook.admission.reviews import encode_patch
from webhook.config import ContainerCredentialsSettings, MutationConfig
from webhook.errors import InvalidPod
from webhook.sources.manifests import StaticSources

CONFIG = MutationConfig(region="us-west-2")
OTHER_ROLE = "arn:aws:iam::111122223333:role/other"


def pod(image: str = "app:1", account: str = "app") -> Any:
    return {
        "metadata": {"generateName": "app-5d9c-", "labels": {"app": "app"}},
        "spec": {"serviceAccountName": account, "containers": [{"name": "c", "image": image}]},
    }


def sources(role: str | None = ROLE, **kwargs) -> StaticSources:
    held = StaticSources(**kwargs)
    if role is not None:
        held.service_accounts["default/app"] = parse_service_account(
            {"eks.amazonaws.com/role-arn": role}, CONFIG
        )
    return held


def env(decision: Decision) -> dict[str, str]:
    ops = [op for op in decision.patch if op["path"].endswith("/env")]
    return {v["name"]: v.get("value") for v in ops[0]["value"]} if ops else {}


def test_an_identical_pod_gets_the_decision_made_for_the_first():
    memo, held = DecisionMemo(CONFIG), sources()

    first = memo.decide(pod(), namespace="default", sources=held)
    second = memo.decide(pod(), namespace="default", sources=held)

    assert second is first
    assert second == decide(pod(), namespace="default", sources=held, config=CONFIG)
    assert (memo.hits, memo.misses, len(memo)) == (1, 1, 1)


@pytest.mark.parametrize(
    ("other", "namespace"),
    [(pod(image="app:2"), "default"), (pod(account="other"), "default"), (pod(), "prod")],
    ids=["another image", "another ServiceAccount", "another namespace"],
)
def test_a_pod_that_differs_in_anything_is_decided_again(other, namespace):
    memo, held = DecisionMemo(CONFIG), sources()
    memo.decide(pod(), namespace="default", sources=held)

    decision = memo.decide(other, namespace=namespace, sources=held)

    assert decision == decide(other, namespace=namespace, sources=held, config=CONFIG)
    assert memo.hits == 0


def test_a_changed_service_account_applies_to_the_next_identical_pod():
    memo, held = DecisionMemo(CONFIG), sources()
    assert env(memo.decide(pod(), namespace="default", sources=held))["AWS_ROLE_ARN"] == ROLE

    held.service_accounts["default/app"] = parse_service_account(
        {"eks.amazonaws.com/role-arn": OTHER_ROLE}, CONFIG
    )
    after = memo.decide(pod(), namespace="default", sources=held)

    assert env(after)["AWS_ROLE_ARN"] == OTHER_ROLE
    assert memo.hits == 0
    assert memo.decide(pod(), namespace="default", sources=held) is after


def test_a_removed_service_account_is_seen_at_once_and_the_miss_is_not_kept():
    memo, held = DecisionMemo(CONFIG), sources()
    memo.decide(pod(), namespace="default", sources=held)

    del held.service_accounts["default/app"]
    decision = memo.decide(pod(), namespace="default", sources=held)

    assert decision.reason == "service-account-not-found"
    assert len(memo) == 0
    assert memo.decide(pod(), namespace="default", sources=held).reason == decision.reason
    assert memo.hits == 0


def test_a_config_map_entry_that_appears_gives_its_role_to_the_next_identical_pod():
    memo, held = DecisionMemo(CONFIG), sources(role=None)
    held.service_accounts["default/app"] = parse_service_account({}, CONFIG)
    assert memo.decide(pod(), namespace="default", sources=held).reason == "no-role"

    held.config_map["*/app"] = ConfigMapEntry(OTHER_ROLE, "sts.amazonaws.com", False, 86400)
    decision = memo.decide(pod(), namespace="default", sources=held)

    assert decision.role_source == "config-map-wildcard"
    assert env(decision)["AWS_ROLE_ARN"] == OTHER_ROLE


def test_a_container_credentials_identity_that_appears_switches_the_method():
    memo, held = DecisionMemo(CONFIG), sources()
    assert memo.decide(pod(), namespace="default", sources=held).method == "sts_web_identity"

    held.identities = frozenset({("default", "app")})

    assert memo.decide(pod(), namespace="default", sources=held).method == "container_credentials"


def test_a_decision_that_drew_a_jittered_expiration_is_never_reused():
    draws = itertools.count(10_000)
    memo = DecisionMemo(CONFIG)
    held = sources(role=None, identities=frozenset({("default", "app")}))

    def jitter(low: int, high: int) -> int:
        return next(draws)

    expirations = [
        memo.decide(pod(), namespace="default", sources=held, jitter=jitter).token_expiration
        for _ in range(3)
    ]

    assert expirations == [10_000, 10_001, 10_002]  # one draw per Pod, as upstream spreads them
    assert len(memo) == 0


def test_container_credentials_with_a_set_expiration_draw_nothing_and_are_reused():
    memo = DecisionMemo(CONFIG)
    held = sources(role=None, identities=frozenset({("default", "app")}))
    held.service_accounts["default/app"] = parse_service_account(
        {"eks.amazonaws.com/token-expiration": "3600"}, CONFIG
    )

    def never(low: int, high: int) -> int:
        raise AssertionError("no jitter expected")

    first = memo.decide(pod(), namespace="default", sources=held, jitter=never)

    assert memo.decide(pod(), namespace="default", sources=held, jitter=never) is first
    assert first.method == "container_credentials"


def test_the_least_recently_used_pod_goes_first():
    memo, held = DecisionMemo(CONFIG, pods=2), sources()
    a, b, c = pod("a"), pod("b"), pod("c")
    kept_a = memo.decide(a, namespace="default", sources=held)
    memo.decide(b, namespace="default", sources=held)
    assert memo.decide(a, namespace="default", sources=held) is kept_a  # a used last now

    memo.decide(c, namespace="default", sources=held)  # b goes

    assert len(memo) == 2
    assert memo.decide(a, namespace="default", sources=held) is kept_a
    hits = memo.hits
    memo.decide(b, namespace="default", sources=held)
    assert memo.hits == hits


def test_the_bytes_held_stay_within_the_bound_and_a_large_pod_is_not_kept():
    held = sources()
    size = 4096
    memo = DecisionMemo(CONFIG, size=size)
    for i in range(40):
        memo.decide(pod(f"app:{i}"), namespace="default", sources=held)
        assert memo.held_bytes <= size
    assert 0 < len(memo) < 40

    large = pod("x" * (size // 16))
    memo.clear()
    memo.decide(large, namespace="default", sources=held)
    assert (len(memo), memo.held_bytes) == (0, 0)


def test_a_value_orjson_cannot_encode_is_decided_without_the_memo():
    memo, held = DecisionMemo(CONFIG), sources()
    odd = pod()
    odd["spec"]["priority"] = 2**70  # valid JSON; not a Pod the API server sends

    decision = memo.decide(odd, namespace="default", sources=held)

    assert decision == decide(odd, namespace="default", sources=held, config=CONFIG)
    assert (len(memo), memo.misses) == (0, 1)


def test_an_invalid_pod_raises_as_decide_does_and_nothing_is_kept():
    memo, held = DecisionMemo(CONFIG), sources()
    broken = pod()
    broken["spec"]["containers"] = "not a list"

    for _ in range(2):
        with pytest.raises(InvalidPod, match=r"spec\.containers must be a list"):
            memo.decide(broken, namespace="default", sources=held)
    assert len(memo) == 0


def test_the_pod_is_never_modified():
    memo, held = DecisionMemo(CONFIG), sources()
    given_pod = pod()
    original = copy.deepcopy(given_pod)

    memo.decide(given_pod, namespace="default", sources=held)
    memo.decide(given_pod, namespace="default", sources=held)

    assert given_pod == original


def test_container_credentials_settings_come_from_the_memos_config():
    config = dataclasses.replace(
        CONFIG, container_credentials=ContainerCredentialsSettings(audience="other-audience")
    )
    held = sources(role=None, identities=frozenset({("default", "app")}))
    held.service_accounts["default/app"] = parse_service_account(
        {"eks.amazonaws.com/token-expiration": "3600"}, config
    )

    assert DecisionMemo(config).decide(pod(), namespace="default", sources=held).audience == (
        "other-audience"
    )


def test_a_kept_decision_is_answered_once_and_the_same_answer_serves_its_replicas():
    memo, held = DecisionMemo(CONFIG), sources()
    decision = memo.decide(pod(), namespace="default", sources=held)

    first = memo.answer(decision)

    assert memo.answer(memo.decide(pod(), namespace="default", sources=held)) is first
    assert first == verdicts.answer(decision)
    assert first.patch == encode_patch(decision.patch)


def test_a_decision_the_memo_does_not_hold_is_answered_afresh():
    memo, held = DecisionMemo(CONFIG, pods=1), sources()
    evicted = memo.decide(pod("a"), namespace="default", sources=held)
    memo.decide(pod("b"), namespace="default", sources=held)  # a goes
    replaced = dataclasses.replace(evicted, role_arn=OTHER_ROLE)  # as an association does

    for decision in (evicted, replaced):
        assert memo.answer(decision) is not memo.answer(decision)
        assert memo.answer(decision) == verdicts.answer(decision)
    assert memo.answer(replaced).audit["role-arn"] == OTHER_ROLE


@given(pods(), setups(), service_account_annotations(), st.booleans(), st.booleans())
def test_memo_and_decide_agree_before_and_after_any_change_of_the_sources(
    pod, setup, annotations, flip_identity, drop_config_map
):
    held, config = setup
    memo = DecisionMemo(config)

    def agree() -> None:
        for _ in range(2):  # decided, then reused (or decided again when it was not kept)
            got = memo.decide(pod, namespace="default", sources=held, jitter=lowest)
            made = decide(pod, namespace="default", sources=held, config=config, jitter=lowest)
            assert got == made
            assert memo.answer(got) == verdicts.answer(made)

    agree()
    held.service_accounts["default/app"] = parse_service_account(annotations, config)
    agree()
    if flip_identity:
        held.identities = held.identities ^ {("default", "app")}
    if drop_config_map:
        held.config_map.clear()
    agree()
