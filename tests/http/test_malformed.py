"""Malformed webhook requests: a 4xx with a JSON error, never a 500 and never a denial.

An `allowed: false` answer denies the Pod whatever the webhook's failurePolicy says; a 4xx lets
the API server apply the failurePolicy the cluster owner chose (docs/compatibility.md, 2b).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog

from tests.http.conftest import Harness
from tests.http.helpers import JSON, metric_samples, metric_value
from tests.support.reviews import make_pod, make_review

pytestmark = pytest.mark.timeout(20)


def _review_with(**request: Any) -> bytes:
    review = make_review(make_pod())
    review["request"].update(request)
    return json.dumps(review).encode()


def _without(key: str) -> bytes:
    review = make_review(make_pod())
    del review["request"][key]
    return json.dumps(review).encode()


VALID = json.dumps(make_review(make_pod())).encode()
SECRET_TOKEN = "c3VwZXItc2VjcmV0LXRva2Vu"
SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds", "namespace": "default"},
    "data": {"token": SECRET_TOKEN},
}


@dataclass(frozen=True)
class Bad:
    body: bytes
    status: int
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    method: str = "POST"


CASES: dict[str, Bad] = {
    "an empty body": Bad(b"", 400),
    "a body that is not JSON": Bad(b"this is not json", 400),
    "a JSON array": Bad(b"[]", 400),
    "a JSON null": Bad(b"null", 400),
    "a JSON string": Bad(b'"AdmissionReview"', 400),
    "YAML text": Bad(b"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {}\n", 400),
    "truncated JSON": Bad(VALID[: len(VALID) // 2], 400),
    "bytes that are not UTF-8": Bad(b'{"kind": "\xff\xfe"}', 400),
    "a body over 4 MiB": Bad(b" " * (4 * 1024 * 1024 + 1), 413),
    "a text/plain content type": Bad(VALID, 415, {"Content-Type": "text/plain"}),
    "a form content type": Bad(VALID, 415, {"Content-Type": "application/x-www-form-urlencoded"}),
    "no content type at all": Bad(VALID, 415, {}),
    "a GET": Bad(b"", 405, {}, "GET"),
    "a PUT of a valid review": Bad(VALID, 405, method="PUT"),
    "a DELETE": Bad(b"", 405, {}, "DELETE"),
    "a review without a request": Bad(
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', 400
    ),
    "a request that is not an object": Bad(
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": []}', 400
    ),
    "an object that is a Secret": Bad(_review_with(object=SECRET), 400),
    "an object that is a string": Bad(_review_with(object="a pod, honestly"), 400),
    "an object that is null": Bad(_review_with(object=None), 400),
    "no uid": Bad(_without("uid"), 400),
    "an empty uid": Bad(_review_with(uid=""), 400),
    "a numeric uid": Bad(_review_with(uid=42), 400),
    "a request for a Deployment": Bad(
        _review_with(kind={"group": "apps", "version": "v1", "kind": "Deployment"}), 400
    ),
    "a review of another kind": Bad(VALID.replace(b'"AdmissionReview"', b'"ConfigMap"'), 400),
    "an unknown admission apiVersion": Bad(
        VALID.replace(b"admission.k8s.io/v1", b"admission.k8s.io/v2"), 400
    ),
    "a Pod whose spec is a list": Bad(_review_with(object={"kind": "Pod", "spec": []}), 400),
    "a Pod whose containers are not a list": Bad(
        _review_with(
            object={"kind": "Pod", "spec": {"serviceAccountName": "s3-reader", "containers": {}}}
        ),
        400,
    ),
    "deeply nested JSON": Bad(b'{"request": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
}


async def _send(harness: Harness, case: Bad) -> tuple[int, str, Any]:
    response = await harness.client.request(
        case.method,
        "/mutate",
        data=io.BytesIO(case.body) if case.body else None,
        headers=case.headers,
        skip_auto_headers=["Content-Type"],
    )
    text = await response.text()
    return response.status, response.content_type, json.loads(text)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_malformed_input_is_a_4xx_with_a_json_error_never_a_denial(
    harness: Harness, case: Bad
):
    status, content_type, body = await _send(harness, case)

    assert status == case.status, body
    assert content_type == "application/json"
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]


async def test_the_error_says_what_is_wrong(harness: Harness):
    _, _, no_request = await _send(harness, CASES["a review without a request"])
    _, _, secret = await _send(harness, CASES["an object that is a Secret"])
    _, _, content_type = await _send(harness, CASES["a text/plain content type"])
    _, _, deployment = await _send(harness, CASES["a request for a Deployment"])

    assert "request" in no_request["error"]
    assert "Secret" in secret["error"]
    assert "text/plain" in content_type["error"]
    assert "Deployment" in deployment["error"]


async def test_a_rejected_object_is_never_echoed_back(harness: Harness):
    _, _, body = await _send(harness, CASES["an object that is a Secret"])

    assert SECRET_TOKEN not in json.dumps(body)


async def test_a_method_other_than_post_is_told_which_method_to_use(harness: Harness):
    # RFC 9110 15.5.6: a 405 response MUST carry an Allow header.
    response = await harness.client.get("/mutate")

    assert response.status == 405
    assert response.headers.get("Allow") == "POST"


async def test_an_unknown_path_is_a_json_404(harness: Harness):
    response = await harness.client.post("/mutate/", data=VALID, headers=JSON)

    assert response.status == 404
    assert set(await response.json()) == {"error"}


async def test_the_server_keeps_answering_after_malformed_requests(harness: Harness):
    for case in CASES.values():
        await _send(harness, case)

    answer = await harness.review(make_review(make_pod()))

    assert "patch" in answer["response"]


def _break_the_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated bug")

    # Both ways to a decision: through the memo, and directly when rules are loaded.
    monkeypatch.setattr("webhook.admission.memo.decide", broken)
    monkeypatch.setattr("webhook.server.app.decide", broken)


async def test_an_unexpected_exception_is_a_logged_json_500(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    _break_the_decision(monkeypatch)

    with structlog.testing.capture_logs() as logs:
        status, content_type, body = await _send(harness, Bad(VALID, 500))

    assert status == 500
    assert content_type == "application/json"
    assert set(body) == {"error"}
    assert "simulated bug" not in body["error"]
    assert [entry["event"] for entry in logs] == ["internal_error"]
    metrics = await harness.metrics_text()
    labels = {"verb": "POST", "path": "/mutate", "code": "500"}
    assert metric_value(metrics, "http_request_count", labels) == 1


async def test_an_unexpected_exception_is_counted_as_an_admission_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
):
    _break_the_decision(monkeypatch)

    await _send(harness, Bad(VALID, 500))

    # The metric's help documents the `error` outcome; an alert on it must see a 500.
    metrics = await harness.metrics_text()
    errors = [
        value
        for labels, value in metric_samples(metrics, "pod_identity_webhook_admissions_total")
        if labels["outcome"] == "error"
    ]
    assert errors == [1]
