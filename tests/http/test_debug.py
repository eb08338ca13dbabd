"""/debug/alpha/cache and /debug/alpha/cache/clear on the metrics port (spec 4.6, 8.6)."""

from __future__ import annotations

import pytest

from tests.http.conftest import MakeHarness
from tests.http.helpers import metric_value
from tests.support.reviews import PREFIX, ROLE, make_pod, make_review

pytestmark = pytest.mark.timeout(20)

DEBUG_PATHS = ["/debug/alpha/cache", "/debug/alpha/cache/clear"]


@pytest.mark.parametrize("path", DEBUG_PATHS)
async def test_debug_pages_do_not_exist_without_the_flag(make_harness: MakeHarness, path: str):
    harness = await make_harness()

    assert (await harness.metrics_client.get(path)).status == 404
    assert (await harness.metrics_client.post(path)).status == 404
    assert (await harness.client.get(path)).status == 404


async def test_clear_without_the_flag_leaves_the_cache_alone(make_harness: MakeHarness):
    harness = await make_harness()

    await harness.metrics_client.post("/debug/alpha/cache/clear")

    assert len(harness.store) == 2


@pytest.mark.parametrize("path", DEBUG_PATHS)
async def test_debug_pages_are_only_on_the_metrics_port(make_harness: MakeHarness, path: str):
    harness = await make_harness(enable_debugging_handlers=True)

    assert (await harness.client.get(path)).status == 404


async def test_the_cache_dump_is_upstreams_exact_format(make_harness: MakeHarness):
    harness = await make_harness(
        enable_debugging_handlers=True,
        service_accounts=[
            ("team", "b", {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/audience": "custom"}),
            ("default", "a", None),
        ],
    )

    response = await harness.metrics_client.get("/debug/alpha/cache")

    assert response.status == 200
    # Go's json.MarshalIndent(map, "", " "): map keys sorted, struct fields in declaration order.
    assert await response.text() == (
        "{\n"
        ' "default/a": {\n'
        '  "RoleARN": "",\n'
        '  "Audience": "sts.amazonaws.com",\n'
        '  "UseRegionalSTS": false,\n'
        '  "TokenExpiration": 86400\n'
        " },\n"
        ' "team/b": {\n'
        f'  "RoleARN": "{ROLE}",\n'
        '  "Audience": "custom",\n'
        '  "UseRegionalSTS": false,\n'
        '  "TokenExpiration": 86400\n'
        " }\n"
        "}"
    )


async def test_the_cache_dump_has_one_space_indent_sorted_keys_and_no_trailing_newline(
    make_harness: MakeHarness,
):
    harness = await make_harness(
        enable_debugging_handlers=True,
        service_accounts=[("zeta", "sa", None), ("alpha", "sa", None)],
    )

    text = await (await harness.metrics_client.get("/debug/alpha/cache")).text()

    lines = text.split("\n")
    assert lines[0] == "{"
    assert lines[1] == ' "alpha/sa": {'
    assert lines[2].startswith('  "')
    assert ' "zeta/sa": {' in lines
    assert not text.endswith("\n")


async def test_an_empty_cache_dumps_as_an_empty_object(make_harness: MakeHarness):
    harness = await make_harness(enable_debugging_handlers=True, service_accounts=[])

    response = await harness.metrics_client.get("/debug/alpha/cache")

    assert await response.text() == "{}"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
async def test_the_cache_dump_answers_any_method(make_harness: MakeHarness, method: str):
    harness = await make_harness(enable_debugging_handlers=True)

    response = await harness.metrics_client.request(method, "/debug/alpha/cache")

    assert response.status == 200
    assert "default/s3-reader" in await response.text()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_clear_empties_the_cache_and_answers_an_empty_200(
    make_harness: MakeHarness, method: str
):
    harness = await make_harness(enable_debugging_handlers=True)

    response = await harness.metrics_client.request(method, "/debug/alpha/cache/clear")

    assert response.status == 200
    assert await response.read() == b""
    assert await (await harness.metrics_client.get("/debug/alpha/cache")).text() == "{}"
    metrics = await harness.metrics_text()
    assert metric_value(metrics, "pod_identity_webhook_service_account_cache_size") == 0


async def test_after_clear_a_pod_is_no_longer_mutated(make_harness: MakeHarness):
    harness = await make_harness(enable_debugging_handlers=True)
    assert "patch" in (await harness.review(make_review(make_pod())))["response"]

    await harness.metrics_client.post("/debug/alpha/cache/clear")

    answer = await harness.review(make_review(make_pod(), uid="after-clear"))
    assert "patch" not in answer["response"]
    assert answer["response"]["auditAnnotations"]["reason"] == "service-account-not-found"
