"""The ServiceAccount lookup grace period (docs/compatibility.md, 2c): a Pod created right after
its ServiceAccount is mutated even when the watch has not delivered the ServiceAccount yet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.http.conftest import Harness, MakeHarness
from tests.http.helpers import metric_samples, metric_value
from tests.support.reviews import PREFIX, ROLE, env_of, make_pod, make_review, patched_pod

pytestmark = pytest.mark.timeout(20)

LATE = {f"{PREFIX}/role-arn": ROLE}


def _watch_misses(harness: Harness) -> tuple[asyncio.Event, list[tuple[str, str]]]:
    """An event set when a request starts waiting for a key (the store's on_miss hook)."""
    waiting = asyncio.Event()
    calls: list[tuple[str, str]] = []

    def on_miss(namespace: str, name: str) -> None:
        calls.append((namespace, name))
        waiting.set()

    harness.store.on_miss = on_miss
    return waiting, calls


def _lookups(text: str) -> dict[str, float]:
    samples = metric_samples(text, "pod_identity_webhook_service_account_lookups_total")
    return {labels["path"]: value for labels, value in samples if value}


async def test_a_service_account_arriving_during_the_wait_gets_the_pod_mutated(
    make_harness: MakeHarness,
):
    harness = await make_harness(grace_period=5.0)
    waiting, _ = _watch_misses(harness)
    review = make_review(make_pod("late"))
    started = time.monotonic()

    request = asyncio.create_task(harness.review(review))
    await asyncio.wait_for(waiting.wait(), 5)
    assert not request.done()
    harness.store.put_service_account("default", "late", LATE)
    answer = await asyncio.wait_for(request, 5)

    assert time.monotonic() - started < 2.5  # answered on arrival, not after the grace period
    assert env_of(patched_pod(review, answer)["spec"]["containers"][0])["AWS_ROLE_ARN"] == ROLE
    assert answer["response"]["auditAnnotations"]["reason"] == "injected"
    text = await harness.metrics_text()
    assert metric_value(text, "pod_identity_webhook_missing_sa_count") is None
    lookups = _lookups(text)
    assert "missed" not in lookups
    assert "cache" not in lookups
    assert sum(lookups.values()) == 1


async def test_a_late_service_account_is_explained_in_a_warning(make_harness: MakeHarness):
    harness = await make_harness(grace_period=5.0)
    waiting, _ = _watch_misses(harness)

    request = asyncio.create_task(harness.review(make_review(make_pod("late"))))
    await asyncio.wait_for(waiting.wait(), 5)
    harness.store.put_service_account("default", "late", LATE)
    answer = await asyncio.wait_for(request, 5)

    warnings = answer["response"].get("warnings", [])
    assert any("default/late" in warning for warning in warnings)
    assert not any("not found" in warning for warning in warnings)


async def test_without_the_service_account_the_answer_comes_after_the_grace_period(
    make_harness: MakeHarness,
):
    harness = await make_harness(grace_period=0.4)
    started = time.monotonic()

    answer = await harness.review(make_review(make_pod("never")))

    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == ["pod-identity-webhook: ServiceAccount default/never not found"]
    text = await harness.metrics_text()
    assert metric_value(text, "pod_identity_webhook_missing_sa_count") == 1
    assert _lookups(text) == {"missed": 1}


async def test_concurrent_requests_for_the_same_account_share_one_lookup_and_all_wake(
    make_harness: MakeHarness,
):
    harness = await make_harness(grace_period=5.0)
    waiting, calls = _watch_misses(harness)

    requests = [
        asyncio.create_task(harness.review(make_review(make_pod("late"), uid=f"uid-{i}")))
        for i in range(5)
    ]
    await asyncio.wait_for(waiting.wait(), 5)
    await asyncio.sleep(0.05)  # let every request reach the store
    harness.store.put_service_account("default", "late", LATE)
    answers: list[dict[str, Any]] = await asyncio.wait_for(asyncio.gather(*requests), 5)

    assert calls == [("default", "late")]
    assert sorted(a["response"]["uid"] for a in answers) == [f"uid-{i}" for i in range(5)]
    assert all("patch" in a["response"] for a in answers)


async def test_a_waiting_request_does_not_hold_up_other_requests(make_harness: MakeHarness):
    harness = await make_harness(grace_period=5.0)
    waiting, _ = _watch_misses(harness)

    parked = asyncio.create_task(harness.review(make_review(make_pod("late"), uid="parked")))
    await asyncio.wait_for(waiting.wait(), 5)
    started = time.monotonic()
    answer = await harness.review(make_review(make_pod(), uid="quick"))

    assert time.monotonic() - started < 1
    assert "patch" in answer["response"]
    assert not parked.done()
    harness.store.put_service_account("default", "late", LATE)
    await asyncio.wait_for(parked, 5)


async def test_a_known_service_account_never_waits(make_harness: MakeHarness):
    harness = await make_harness(grace_period=5.0)
    _, calls = _watch_misses(harness)
    started = time.monotonic()

    await harness.review(make_review(make_pod("default")))

    assert time.monotonic() - started < 1
    assert calls == []
    assert _lookups(await harness.metrics_text()) == {"cache": 1}


async def test_a_zero_grace_period_counts_the_miss_at_once(make_harness: MakeHarness):
    harness = await make_harness(grace_period=0.0)
    _, calls = _watch_misses(harness)
    started = time.monotonic()

    answer = await harness.review(make_review(make_pod("ghost")))

    assert time.monotonic() - started < 1
    assert calls == []
    assert "patch" not in answer["response"]
    assert metric_value(await harness.metrics_text(), "pod_identity_webhook_missing_sa_count") == 1


async def test_an_account_that_arrives_without_a_role_is_not_a_miss(make_harness: MakeHarness):
    harness = await make_harness(grace_period=5.0)
    waiting, _ = _watch_misses(harness)

    request = asyncio.create_task(harness.review(make_review(make_pod("plain"))))
    await asyncio.wait_for(waiting.wait(), 5)
    harness.store.put_service_account("default", "plain", None)
    answer = await asyncio.wait_for(request, 5)

    assert answer["response"]["auditAnnotations"]["reason"] == "no-role"
    assert "patch" not in answer["response"]
    assert (
        metric_value(await harness.metrics_text(), "pod_identity_webhook_missing_sa_count") is None
    )


async def test_a_full_resync_wakes_a_waiting_request(make_harness: MakeHarness):
    harness = await make_harness(grace_period=5.0)
    waiting, _ = _watch_misses(harness)

    request = asyncio.create_task(harness.review(make_review(make_pod("late"))))
    await asyncio.wait_for(waiting.wait(), 5)
    harness.store.replace_service_accounts([("default", "late", LATE)])
    answer = await asyncio.wait_for(request, 5)

    assert "patch" in answer["response"]


async def test_a_review_without_a_namespace_is_answered_at_once_with_a_warning(
    make_harness: MakeHarness,
):
    """The API server always names the namespace; without one nothing can arrive, so no wait,
    and the Pod's own metadata.namespace is not looked up instead (upstream uses the request's)."""
    harness = await make_harness(grace_period=5.0)
    _, calls = _watch_misses(harness)
    started = time.monotonic()

    answer = await harness.review(make_review(make_pod("s3-reader"), namespace=None))

    assert time.monotonic() - started < 1.0
    assert calls == []
    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert any("no request.namespace" in warning for warning in response["warnings"])
