"""/metrics on the metrics port: upstream's series under their exact names and labels, plus ours.

Values are checked, not only names: dashboards and alerts built on upstream's series must keep
computing the same numbers.
"""

from __future__ import annotations

import json

import pytest

from tests.http.conftest import Harness, MakeHarness
from tests.http.helpers import JSON, metric_samples, metric_value
from tests.support.reviews import make_pod, make_review, patched_pod

pytestmark = pytest.mark.timeout(20)

POST_200 = {"verb": "POST", "path": "/mutate", "code": "200"}
POST_MUTATE = {"verb": "POST", "path": "/mutate"}
UPSTREAM_BUCKETS = [125000.0, 250000.0, 500000.0, 1e6, 2e6, 4e6, 8e6, float("inf")]


async def _mutate(harness: Harness, service_account: str = "s3-reader", uid: str = "u") -> None:
    await harness.review(make_review(make_pod(service_account), uid=uid))


async def test_the_metrics_page_is_prometheus_text(harness: Harness):
    response = await harness.metrics_client.get("/metrics")

    assert response.status == 200
    assert response.content_type == "text/plain"
    assert response.charset == "utf-8"


async def test_http_request_count_keeps_upstreams_name_and_label_order(harness: Harness):
    await _mutate(harness)

    text = await harness.metrics_text()

    # Go's client sorts label names; a `grep` written against upstream's page still matches.
    assert 'http_request_count{code="200",path="/mutate",verb="POST"} 1.0' in text.splitlines()
    assert "http_request_count_total" not in text


async def test_http_request_count_goes_up_by_exactly_one_per_request(harness: Harness):
    await _mutate(harness, uid="1")
    first = metric_value(await harness.metrics_text(), "http_request_count", POST_200)

    await _mutate(harness, uid="2")
    second = metric_value(await harness.metrics_text(), "http_request_count", POST_200)

    assert (first, second) == (1, 2)


async def test_a_bad_request_is_counted_with_its_own_code(harness: Harness):
    await harness.client.post("/mutate", data=b"not json", headers=JSON)
    await harness.client.post("/mutate", data=b"{}", headers={"Content-Type": "text/plain"})
    await harness.client.get("/mutate")

    text = await harness.metrics_text()

    assert metric_value(text, "http_request_count", {**POST_MUTATE, "code": "400"}) == 1
    assert metric_value(text, "http_request_count", {**POST_MUTATE, "code": "415"}) == 1
    assert (
        metric_value(text, "http_request_count", {"verb": "GET", "path": "/mutate", "code": "405"})
        == 1
    )
    assert metric_value(text, "http_request_count", POST_200) is None


async def test_health_and_metrics_pages_are_not_instrumented(harness: Harness):
    await harness.client.get("/healthz")
    await harness.client.get("/readyz")
    await harness.metrics_text()

    text = await harness.metrics_text()

    paths = {labels["path"] for labels, _ in metric_samples(text, "http_request_count")}
    assert paths == set()


async def test_request_latencies_use_upstreams_microsecond_buckets(harness: Harness):
    await _mutate(harness, uid="1")
    await _mutate(harness, uid="2")

    text = await harness.metrics_text()

    buckets = [
        (float(labels["le"]), value)
        for labels, value in metric_samples(text, "http_request_latencies_bucket")
        if {k: labels[k] for k in ("verb", "path")} == POST_MUTATE
    ]
    assert [le for le, _ in buckets] == UPSTREAM_BUCKETS
    assert buckets[-1][1] == 2
    assert metric_value(text, "http_request_latencies_count", POST_MUTATE) == 2
    latency_sum = metric_value(text, "http_request_latencies_sum", POST_MUTATE)
    assert latency_sum is not None
    assert latency_sum == int(latency_sum)  # whole microseconds, as upstream truncates


async def test_the_request_duration_summary_counts_requests_without_quantiles(harness: Harness):
    await _mutate(harness, uid="1")
    await _mutate(harness, uid="2")
    await _mutate(harness, uid="3")

    text = await harness.metrics_text()

    assert metric_value(text, "http_request_duration_microseconds_count", POST_MUTATE) == 3
    total = metric_value(text, "http_request_duration_microseconds_sum", POST_MUTATE)
    assert total is not None
    assert total >= 0
    assert metric_samples(text, "http_request_duration_microseconds") == []


async def test_pod_count_counts_each_pod_that_gets_web_identity(harness: Harness):
    review = make_review(make_pod())
    first = await harness.review(review)
    # Upstream counts a pod whenever a patch configuration is built, even with nothing to add.
    await harness.review(make_review(patched_pod(review, first), uid="again"))
    await _mutate(harness, "default", uid="no-role")

    text = await harness.metrics_text()

    assert metric_samples(text, "pod_identity_webhook_pod_count") == [
        ({"method": "sts_web_identity"}, 2.0)
    ]


async def test_missing_sa_count_is_absent_until_the_first_miss(harness: Harness):
    await _mutate(harness)
    await _mutate(harness, "default", uid="no-role")
    before = await harness.metrics_text()

    await _mutate(harness, "ghost", uid="miss")
    after = await harness.metrics_text()

    assert metric_value(before, "pod_identity_webhook_missing_sa_count") is None
    assert metric_value(after, "pod_identity_webhook_missing_sa_count") == 1


async def test_used_is_zero_until_a_service_account_is_seen(make_harness: MakeHarness):
    harness = await make_harness(service_accounts=[])
    before = metric_value(await harness.metrics_text(), "pod_identity_webhook_used")

    harness.store.put_service_account("default", "any", None)
    after = metric_value(await harness.metrics_text(), "pod_identity_webhook_used")

    assert (before, after) == (0, 1)


async def test_admission_duration_has_a_sub_millisecond_bucket_and_counts_each_admission(
    harness: Harness,
):
    await _mutate(harness, uid="1")
    await harness.client.post("/mutate", data=b"[]", headers=JSON)

    text = await harness.metrics_text()

    bounds = [
        float(labels["le"])
        for labels, _ in metric_samples(
            text, "pod_identity_webhook_admission_duration_seconds_bucket"
        )
    ]
    assert bounds[0] == 0.0001
    assert 'pod_identity_webhook_admission_duration_seconds_bucket{le="0.0001"}' in text
    assert metric_value(text, "pod_identity_webhook_admission_duration_seconds_count") == 2


async def test_admissions_are_counted_by_outcome_and_reason(harness: Harness):
    review = make_review(make_pod())
    answer = await harness.review(review)
    await harness.review(make_review(patched_pod(review, answer), uid="2"))
    await _mutate(harness, "default", uid="3")
    await _mutate(harness, "ghost", uid="4")
    await _mutate(harness, "ghost", uid="5")
    await harness.client.post("/mutate", data=b"nope", headers=JSON)

    text = await harness.metrics_text()

    counted = {
        (labels["outcome"], labels["reason"]): value
        for labels, value in metric_samples(text, "pod_identity_webhook_admissions_total")
    }
    assert counted == {
        ("mutated", "injected"): 1,
        ("not_mutated", "already-present"): 1,
        ("not_mutated", "no-role"): 1,
        ("not_mutated", "service-account-not-found"): 2,
        ("rejected", "bad_request"): 1,
        ("error", "internal_error"): 0,  # present from the start, so rate() sees the first one
    }


async def test_lookups_are_counted_by_path(harness: Harness):
    await _mutate(harness, uid="1")
    await _mutate(harness, "default", uid="2")
    await _mutate(harness, "ghost", uid="3")

    text = await harness.metrics_text()

    counted = {
        labels["path"]: value
        for labels, value in metric_samples(
            text, "pod_identity_webhook_service_account_lookups_total"
        )
    }
    assert counted == {"cache": 2, "missed": 1, "informer": 0, "api": 0}


async def test_cache_size_follows_the_store(harness: Harness):
    assert (
        metric_value(
            await harness.metrics_text(), "pod_identity_webhook_service_account_cache_size"
        )
        == 2
    )

    harness.store.put_service_account("team", "new", None)
    grown = metric_value(
        await harness.metrics_text(), "pod_identity_webhook_service_account_cache_size"
    )
    harness.store.replace_service_accounts([("team", "only", None)])
    shrunk = metric_value(
        await harness.metrics_text(), "pod_identity_webhook_service_account_cache_size"
    )

    assert (grown, shrunk) == (3, 1)


async def test_every_series_has_help_text(harness: Harness):
    await _mutate(harness)
    await _mutate(harness, "ghost", uid="miss")

    text = await harness.metrics_text()

    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    for name in (
        "http_request_count",
        "http_request_latencies",
        "http_request_duration_microseconds",
        "pod_identity_webhook_pod_count",
        "pod_identity_webhook_missing_sa_count",
        "pod_identity_webhook_used",
    ):
        assert name in helped, name
    assert (
        "# HELP http_request_count Counter of requests broken out for each verb, path, "
        "and response code." in text
    )


async def test_a_request_body_never_becomes_a_label(harness: Harness):
    await harness.client.post(
        "/mutate", data=json.dumps({"request": {"uid": "x" * 40}}), headers=JSON
    )

    text = await harness.metrics_text()

    assert "x" * 40 not in text
