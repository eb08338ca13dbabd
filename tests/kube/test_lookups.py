"""Admission with a cache miss (docs/compatibility.md, 2c): wait for the watch, live GET, dedup,
limits.

Driven through the real webhook app (`make_webhook_app`) over aiohttp's test client, with the
reflectors and the fetcher talking to the fake API server.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.kube.conftest import MakeAdmission, Start
from tests.kube.fakeapi import SERVICE_ACCOUNTS, FakeApi, service_account
from tests.kube.helpers import ANNOTATED, eventually, injected_role
from tests.support.reviews import ROLE

pytestmark = pytest.mark.timeout(20)

GRACE = 2.0


async def test_a_cached_service_account_is_answered_without_waiting_or_fetching(
    fake: FakeApi, admission: MakeAdmission
):
    fake.add_service_account("default", "s3-reader", ANNOTATED)
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready)

    answer = await webhook.review("s3-reader")

    assert injected_role(answer) == ROLE
    assert webhook.lookups("cache") == 1
    assert fake.gets == {}


async def test_readyz_answers_503_until_the_first_list_and_200_after(
    fake: FakeApi, admission: MakeAdmission
):
    fake.list_failures[SERVICE_ACCOUNTS] = 500
    webhook = await admission()
    await eventually(lambda: len(fake.recorded("list")) >= 2)

    assert await webhook.readyz() == 503
    response = await webhook.client.get("/readyz")
    assert "ServiceAccounts not synced" in await response.text()

    del fake.list_failures[SERVICE_ACCOUNTS]
    await eventually(lambda: webhook.running.store.ready)
    assert await webhook.readyz() == 200


async def test_a_service_account_that_appears_on_the_watch_while_the_request_waits_is_used(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready and fake.watching() == 1)
    fake.get_status["default/late"] = 500  # the live GET fails: only the watch can deliver it

    started = time.monotonic()
    request = asyncio.create_task(webhook.review("late"))
    await eventually(lambda: fake.gets["default/late"] == 1, what="the miss's live GET")
    await eventually(lambda: webhook.running.fetches == ["error"])
    assert not request.done()
    fake.add_service_account("default", "late", ANNOTATED)
    answer = await request

    assert injected_role(answer) == ROLE
    assert time.monotonic() - started < GRACE
    assert webhook.lookups("informer") == 1
    assert any("found through the watch" in w for w in answer["response"].get("warnings", []))


async def test_a_service_account_only_reachable_by_get_is_found_through_the_api(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready and fake.watching() == 1)
    fake.get_only["default/hidden"] = service_account("default", "hidden", ANNOTATED)

    started = time.monotonic()
    answer = await webhook.review("hidden")

    assert injected_role(answer) == ROLE
    assert time.monotonic() - started < 1.0
    assert webhook.lookups("api") == 1
    assert fake.gets == {"default/hidden": 1}
    assert (
        webhook.running.sample("pod_identity_webhook_service_account_fetches_total", result="found")
        == 1
    )
    # The fetched entry is cached: the next Pod is answered from the cache.
    await webhook.review("hidden")
    assert webhook.lookups("cache") == 1
    assert fake.gets == {"default/hidden": 1}


async def test_a_404_from_the_live_get_ends_the_wait_well_before_the_grace_period(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready)

    started = time.monotonic()
    answer = await webhook.review("does-not-exist")
    elapsed = time.monotonic() - started

    assert injected_role(answer) is None
    assert "patch" not in answer["response"]
    assert elapsed < 0.5, elapsed
    assert webhook.lookups("missed") == 1
    assert fake.gets == {"default/does-not-exist": 1}
    assert webhook.running.fetches == ["not_found"]


async def test_a_slow_api_server_costs_at_most_the_grace_period(
    fake: FakeApi, admission: MakeAdmission
):
    fake.get_delay = 3.0  # longer than the fetch timeout and the grace period
    webhook = await admission(grace_period=0.5)
    await eventually(lambda: webhook.running.store.ready)

    started = time.monotonic()
    answer = await webhook.review("slow")

    assert injected_role(answer) is None
    assert 0.45 < time.monotonic() - started < 1.0
    assert webhook.lookups("missed") == 1
    await eventually(lambda: webhook.running.fetches == ["error"], timeout=3.0)


async def test_a_hundred_concurrent_misses_for_one_key_make_exactly_one_get(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready)
    fake.get_only["default/popular"] = service_account("default", "popular", ANNOTATED)
    fake.get_delay = 0.2

    answers = await asyncio.gather(*(webhook.review("popular") for _ in range(100)))

    assert [injected_role(a) for a in answers] == [ROLE] * 100
    assert fake.gets == {"default/popular": 1}
    assert webhook.lookups("api") == 100


async def test_misses_for_many_keys_are_fetched_no_faster_than_the_token_bucket(
    fake: FakeApi, start: Start
):
    running = start(grace_period=GRACE)
    await eventually(lambda: running.store.ready)
    store = running.store

    started = time.monotonic()
    waits = [
        asyncio.create_task(store.wait_for("default", f"sa-{index:03d}", 1.5))
        for index in range(100)
    ]
    results = await asyncio.gather(*waits)
    window = time.monotonic() - started

    stamps = sorted(r.at for r in fake.recorded("get"))
    assert results.count(None) == 100
    # Burst 20, then 10 a second: never more than 20 + 10 t (+ slack for timing) by time t.
    for count, stamp in enumerate(stamps, start=1):
        allowed = 20 + 10 * (stamp - started) + 2
        assert count <= allowed, (count, stamp - started)
    assert len(stamps) >= 20 + 10 * (window - 0.5)  # and the bucket does let them through
    assert len(stamps) < 100


async def test_a_failed_get_is_retried_on_a_later_miss(fake: FakeApi, admission: MakeAdmission):
    webhook = await admission(grace_period=0.3)
    await eventually(lambda: webhook.running.store.ready)
    fake.get_status["default/flaky"] = 500

    first = await webhook.review("flaky")

    assert injected_role(first) is None
    assert webhook.running.fetches == ["error"]

    del fake.get_status["default/flaky"]
    fake.get_only["default/flaky"] = service_account("default", "flaky", ANNOTATED)

    second = await webhook.review("flaky")

    assert injected_role(second) == ROLE
    assert fake.gets == {"default/flaky": 2}
    assert webhook.running.fetches == ["error", "found"]
    assert webhook.lookups("api") == 1


async def test_without_a_grace_period_a_miss_neither_waits_nor_fetches(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=0.0)
    await eventually(lambda: webhook.running.store.ready)
    fake.get_only["default/hidden"] = service_account("default", "hidden", ANNOTATED)

    answer = await webhook.review("hidden")

    assert injected_role(answer) is None
    assert webhook.lookups("missed") == 1
    assert fake.gets == {}


async def test_admission_keeps_answering_from_the_cache_after_the_api_server_goes_away(
    fake: FakeApi, admission: MakeAdmission
):
    fake.add_service_account("default", "s3-reader", ANNOTATED)
    webhook = await admission(grace_period=0.3)
    await eventually(lambda: webhook.running.store.ready and fake.watching() == 1)

    await fake.close(graceful=True)
    await eventually(lambda: len(webhook.running.errors) >= 2, what="connection failures")

    answer = await webhook.review("s3-reader")
    assert injected_role(answer) == ROLE
    assert await webhook.readyz() == 200
    # A miss while the API server is away waits its grace period and is not mutated.
    started = time.monotonic()
    missed = await webhook.review("unknown")
    assert injected_role(missed) is None
    assert time.monotonic() - started < 1.0
    assert webhook.running.fetches == ["error"]


async def test_a_relist_releases_a_request_waiting_for_a_service_account(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=GRACE)
    await eventually(lambda: webhook.running.store.ready and fake.watching() == 1)
    fake.get_status["default/relisted"] = 500

    request = asyncio.create_task(webhook.review("relisted"))
    await eventually(lambda: webhook.running.fetches == ["error"])
    fake.add_service_account("default", "relisted", ANNOTATED, broadcast=False)
    fake.expire()
    answer = await request

    assert injected_role(answer) == ROLE
    assert len(fake.recorded("list")) == 2
    assert webhook.lookups("informer") == 1


async def test_a_get_still_in_flight_serves_a_later_miss_without_a_second_get(
    fake: FakeApi, admission: MakeAdmission
):
    webhook = await admission(grace_period=0.4)
    await eventually(lambda: webhook.running.store.ready)
    fake.get_only["default/slow"] = service_account("default", "slow", ANNOTATED)
    fake.get_delay = 0.7  # under the fetch timeout, over the first request's grace period

    first = await webhook.review("slow")
    assert injected_role(first) is None
    second = await webhook.review("slow")  # the first GET is still running

    assert injected_role(second) == ROLE
    assert fake.gets == {"default/slow": 1}
    assert webhook.lookups("missed") == 1
    assert webhook.lookups("api") == 1
