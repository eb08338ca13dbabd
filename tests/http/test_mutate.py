"""POST /mutate with well-formed AdmissionReviews: the wire format the API server relies on."""

from __future__ import annotations

import json

import pytest

from tests.http.conftest import Harness, MakeHarness
from tests.http.helpers import JSON, MOUNT_PATH, TOKEN_FILE, sample_review
from tests.support.reviews import (
    PREFIX,
    ROLE,
    UID,
    decode_patch,
    env_of,
    make_pod,
    make_review,
    patched_pod,
)
from webhook.admission.entries import ConfigMapEntry

pytestmark = pytest.mark.timeout(20)


async def test_the_sample_review_is_answered_with_a_patch_that_injects_the_role(harness: Harness):
    review = sample_review()

    answer = await harness.review(review)

    assert answer["kind"] == "AdmissionReview"
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    response = answer["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert "status" not in response
    pod = patched_pod(review, answer)
    container = pod["spec"]["containers"][0]
    assert env_of(container) == {
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        "AWS_ROLE_ARN": ROLE,
        "AWS_WEB_IDENTITY_TOKEN_FILE": TOKEN_FILE,
    }
    assert [v["name"] for v in container["env"]] == [
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    assert container["volumeMounts"] == [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "aws-iam-token", "readOnly": True, "mountPath": MOUNT_PATH},
    ]
    assert pod["spec"]["volumes"] == [
        {
            "name": "aws-iam-token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "sts.amazonaws.com",
                            "expirationSeconds": 3600,
                            "path": "token",
                        }
                    }
                ]
            },
        },
        {"name": "scratch", "emptyDir": {}},
    ]


async def test_a_mutation_is_explained_in_audit_annotations(harness: Harness):
    answer = await harness.review(sample_review())

    assert answer["response"]["auditAnnotations"] == {
        "decision": "mutated",
        "reason": "injected",
        "service-account": "default/s3-reader",
        "method": "sts_web_identity",
        "role-source": "service-account",
        "role-arn": ROLE,
    }
    assert "warnings" not in answer["response"]


async def test_the_patch_is_standard_padded_base64_of_a_json_patch(harness: Harness):
    answer = await harness.review(sample_review())

    patch = decode_patch(answer["response"])

    assert patch
    assert all(op["op"] == "add" for op in patch)
    assert len(answer["response"]["patch"]) % 4 == 0


async def test_a_v1beta1_review_is_answered_as_v1beta1(harness: Harness):
    review = make_review(make_pod(), api_version="admission.k8s.io/v1beta1", uid="beta-uid")

    answer = await harness.review(review)

    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "beta-uid"
    assert answer["response"]["patchType"] == "JSONPatch"
    container = patched_pod(review, answer)["spec"]["containers"][0]
    assert env_of(container)["AWS_ROLE_ARN"] == ROLE


async def test_a_review_without_typemeta_is_answered_without_typemeta(harness: Harness):
    # Upstream's hack/request.json style: no apiVersion/kind; only the present fields are echoed.
    review = make_review(make_pod(), api_version=None, kind=None)

    answer = await harness.review(review)

    assert set(answer) == {"response"}
    assert answer["response"]["uid"] == UID
    assert answer["response"]["allowed"] is True
    assert "patch" in answer["response"]


async def test_the_answer_keeps_kind_before_api_version_like_go(harness: Harness):
    response = await harness.client.post("/mutate", data=json.dumps(sample_review()), headers=JSON)

    text = await response.text()

    assert text.startswith('{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"')


async def test_a_pod_that_already_has_everything_gets_no_patch(harness: Harness):
    review = sample_review()
    first = await harness.review(review)
    mutated = patched_pod(review, first)
    again = make_review(mutated, uid="second")

    answer = await harness.review(again)

    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert "patchType" not in response
    assert response["auditAnnotations"]["decision"] == "not-mutated"
    assert response["auditAnnotations"]["reason"] == "already-present"


async def test_a_service_account_without_a_role_is_allowed_unchanged(harness: Harness):
    answer = await harness.review(make_review(make_pod("default")))

    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["auditAnnotations"] == {
        "decision": "not-mutated",
        "reason": "no-role",
        "service-account": "default/default",
    }
    assert "warnings" not in response


async def test_a_missing_service_account_is_a_warning_when_there_is_no_grace_period(
    harness: Harness,
):
    answer = await harness.review(make_review(make_pod("ghost")))

    response = answer["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"] == ["pod-identity-webhook: ServiceAccount default/ghost not found"]
    assert response["auditAnnotations"]["reason"] == "service-account-not-found"
    assert response["auditAnnotations"]["decision"] == "not-mutated"


async def test_a_too_short_pod_token_expiration_is_clamped_with_a_warning(harness: Harness):
    pod = make_pod(annotations={f"{PREFIX}/token-expiration": "100"})
    review = make_review(pod)

    answer = await harness.review(review)

    assert answer["response"]["warnings"] == [
        "pod-identity-webhook: token expiration 100 raised to 600 seconds"
    ]
    volume = patched_pod(review, answer)["spec"]["volumes"][0]
    token = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert token["expirationSeconds"] == 600


async def test_a_skipped_container_is_left_alone_with_a_warning(harness: Harness):
    pod = make_pod(
        containers=[{"name": "app", "image": "x"}, {"name": "sidecar", "image": "y"}],
        annotations={f"{PREFIX}/skip-containers": "sidecar"},
    )
    review = make_review(pod)

    answer = await harness.review(review)

    assert answer["response"]["warnings"] == [
        "pod-identity-webhook: container sidecar skipped by annotation"
    ]
    app, sidecar = patched_pod(review, answer)["spec"]["containers"]
    assert env_of(app)["AWS_ROLE_ARN"] == ROLE
    assert sidecar == {"name": "sidecar", "image": "y"}


async def test_a_variable_the_pod_already_sets_is_kept_with_a_warning(harness: Harness):
    pod = make_pod(
        containers=[
            {"name": "app", "image": "x", "env": [{"name": "AWS_ROLE_ARN", "value": "mine"}]}
        ]
    )
    review = make_review(pod)

    answer = await harness.review(review)

    assert answer["response"]["warnings"] == [
        "pod-identity-webhook: container app already sets AWS_ROLE_ARN; not overwritten"
    ]
    env = env_of(patched_pod(review, answer)["spec"]["containers"][0])
    assert env["AWS_ROLE_ARN"] == "mine"
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" not in env


async def test_fields_the_webhook_does_not_know_survive_the_patch(harness: Harness):
    container = {
        "name": "app",
        "image": "x",
        "restartPolicy": "Always",
        "startupProbe": {"grpc": {"port": 8080}},
        "futureField": {"nested": [1, 2, 3]},
    }
    review = make_review(make_pod(containers=[container]))

    answer = await harness.review(review)

    patched = patched_pod(review, answer)["spec"]["containers"][0]
    assert {k: patched[k] for k in container} == container


async def test_a_charset_parameter_on_the_content_type_is_accepted(harness: Harness):
    status, answer = await harness.post(
        json.dumps(sample_review()), {"Content-Type": "application/json; charset=utf-8"}
    )

    assert status == 200
    assert answer["response"]["allowed"] is True


async def test_the_answer_is_served_as_application_json(harness: Harness):
    response = await harness.client.post("/mutate", data=json.dumps(sample_review()), headers=JSON)

    assert response.status == 200
    assert response.content_type == "application/json"


async def test_the_pods_own_namespace_is_not_used_when_the_request_has_none(harness: Harness):
    review = make_review(make_pod(), namespace=None)

    answer = await harness.review(review)

    assert answer["response"]["auditAnnotations"]["service-account"] == "/s3-reader"
    assert "patch" not in answer["response"]


async def test_a_review_as_large_as_the_api_server_allows_is_accepted(harness: Harness):
    # The API server caps request bodies at 3 MiB; such a review must not hit our limit.
    pod = make_pod(annotations={"padding": "x" * (3 * 1024 * 1024 - 2048)})
    body = json.dumps(make_review(pod))
    assert len(body) < 3 * 1024 * 1024

    status, answer = await harness.post(body)

    assert status == 200
    assert "patch" in answer["response"]


async def test_a_role_from_the_config_map_is_attributed_to_it(make_harness: MakeHarness):
    harness = await make_harness()
    harness.store.set_config_map(
        {"default/default": ConfigMapEntry("arn:aws:iam::111122223333:role/cm", "sts", False, 900)}
    )

    answer = await harness.review(make_review(make_pod("default")))

    annotations = answer["response"]["auditAnnotations"]
    assert annotations["role-source"] == "config-map"
    assert annotations["role-arn"] == "arn:aws:iam::111122223333:role/cm"
