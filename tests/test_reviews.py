"""AdmissionReview validation and the response envelope."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from webhook.admission.mutation import Decision
from webhook.admission.notes import Note
from webhook.admission.reviews import dumps, parse_review, respond
from webhook.admission.verdicts import answer as answer_for
from webhook.admission.verdicts import warnings_for
from webhook.errors import BadReview, InvalidPod

POD = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": {}}


def review(**request):
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u1", "object": POD, **request},
    }


def decision(patch=(), notes=(), **fields):
    values: dict[str, Any] = {
        "reason": "no-role",
        "method": None,
        "role_source": None,
        "role_arn": "",
        "namespace": "ns",
        "name": "app",
        "entry": None,
    }
    values.update(fields)
    return Decision(patch=tuple(patch), notes=tuple(notes), **values)


def test_a_v1_review_parses():
    request = parse_review(review(namespace="team"))
    assert (request.uid, request.namespace, request.kind, request.api_version) == (
        "u1",
        "team",
        "AdmissionReview",
        "admission.k8s.io/v1",
    )
    assert request.pod_name == "p"


def test_the_pods_own_namespace_is_never_used_and_name_falls_back_to_generate_name():
    """Upstream looks up the request's namespace; a Pod's metadata.namespace is not trusted."""
    body = review()
    body["request"]["object"] = {
        "metadata": {"generateName": "web-", "namespace": "ns"},
        "spec": {},
    }
    request = parse_review(body)
    assert (request.namespace, request.pod_name) == ("", "web-")


def test_typemeta_may_be_absent_like_upstreams_sample():
    request = parse_review({"request": {"uid": "u", "namespace": "default", "object": POD}})
    assert (request.kind, request.api_version) == (None, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ("x", "must be a JSON object"),
        ({}, "no `request` object"),
        ({"request": None}, "no `request` object"),
        ({"kind": "Pod", "request": {}}, "kind must be AdmissionReview"),
        ({"apiVersion": "v1", "request": {}}, "apiVersion must be"),
        ({"apiVersion": 1, "request": {}}, "apiVersion must be a string"),
        ({"request": {"object": POD}}, "request.uid"),
        ({"request": {"uid": 7, "object": POD}}, "request.uid"),
        (
            {
                "request": {
                    "uid": "u",
                    "kind": {"group": "apps", "kind": "Deployment"},
                    "object": POD,
                }
            },
            "not 'Deployment'",
        ),
        ({"request": {"uid": "u", "namespace": 5, "object": POD}}, "request.namespace"),
    ],
)
def test_non_reviews_are_bad_reviews(body, message):
    with pytest.raises(BadReview, match=message):
        parse_review(body)


@pytest.mark.parametrize("obj", [None, "pod", [], {"kind": "Secret"}])
def test_objects_that_are_not_pods_are_invalid(obj):
    with pytest.raises(InvalidPod):
        parse_review({"request": {"uid": "u", "object": obj}})


def test_response_echoes_typemeta_and_uid_and_encodes_the_patch():
    ops = [{"op": "add", "path": "/spec/volumes", "value": []}]
    answer = respond(
        parse_review(review()),
        answer_for(decision(ops, reason="injected", method="sts_web_identity")),
    )
    assert list(answer) == ["kind", "apiVersion", "response"]
    response = answer["response"]
    assert (response["uid"], response["allowed"], response["patchType"]) == (
        "u1",
        True,
        "JSONPatch",
    )
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["auditAnnotations"]["decision"] == "mutated"


def test_no_patch_when_nothing_to_do():
    answer = respond(parse_review({"request": {"uid": "u", "object": POD}}), answer_for(decision()))
    assert answer == {
        "response": {
            "uid": "u",
            "allowed": True,
            "auditAnnotations": {
                "decision": "not-mutated",
                "reason": "no-role",
                "service-account": "ns/app",
            },
        }
    }


def test_warnings_only_for_notes_worth_a_kubectl_line():
    notes = [
        Note("expiration-jittered", "jittered"),
        Note("container-skipped", "container a skipped by annotation"),
        Note("container-skipped", "container a skipped by annotation"),
        Note("variables-present", "x" * 200),
    ]
    warnings = warnings_for(decision(notes=notes))
    assert warnings[0] == "pod-identity-webhook: container a skipped by annotation"
    assert len(warnings) == 2
    assert len(warnings[1]) == 120


def test_a_pod_without_metadata_has_no_name():
    assert parse_review({"request": {"uid": "u", "object": {"spec": {}}}}).pod_name == ""


def test_integers_beyond_64_bits_are_still_written():
    # orjson refuses them; an extension rule may add one, and the answer must still be JSON.
    assert json.loads(dumps({"big": 2**70, "text": "é"})) == {"big": 2**70, "text": "é"}
