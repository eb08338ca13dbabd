"""EKS Auth's wire shapes and the SDKs' container-credentials answer."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from webhook.errors import (
    EKS_AUTH_ERRORS,
    InternalServerException,
    InvalidParameterException,
    InvalidRequestException,
)
from webhook.podidentity.wire import (
    AssumedRole,
    Credentials,
    parse_assume_request,
    parse_assume_response,
    sdk_credentials,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


def test_a_request() -> None:
    request = parse_assume_request(
        "prod-1", json.dumps({"token": TOKEN, "eksNodeName": "n1"}).encode()
    )
    assert (request.cluster_name, request.token, request.node_name) == ("prod-1", TOKEN, "n1")


@pytest.mark.parametrize(
    ("cluster", "body", "error", "message"),
    [
        ("-bad", b'{"token": "a.b.c"}', InvalidParameterException, "clusterName"),
        ("x" * 101, b'{"token": "a.b.c"}', InvalidParameterException, "clusterName"),
        ("c", b"{", InvalidRequestException, "not JSON"),
        ("c", b"\xff\xfe", InvalidRequestException, "not JSON"),
        ("c", b"[]", InvalidRequestException, "JSON object"),
        ("c", b"{}", InvalidParameterException, "token is required"),
        ("c", b"", InvalidParameterException, "token is required"),
        ("c", b'{"token": 5}', InvalidParameterException, "must be a string"),
        ("c", b'{"token": "not a jwt"}', InvalidParameterException, "not a JWT"),
        ("c", b'{"token": "a.b"}', InvalidParameterException, "not a JWT"),
        (
            "c",
            json.dumps({"token": "a." + "b" * 20000 + ".c"}).encode(),
            InvalidParameterException,
            "longer",
        ),
        ("c", b'{"token": "a.b.c", "eksNodeName": 3}', InvalidParameterException, "eksNodeName"),
    ],
)
def test_bad_requests(cluster: str, body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_assume_request(cluster, body)


ROLE = AssumedRole(
    namespace="ns",
    service_account="app",
    association_arn="arn:aws:eks:us-east-1:111122223333:podidentityassociation/c/a-1",
    association_id="a-1",
    assumed_role_arn="arn:aws:sts::111122223333:assumed-role/app/eks-c-web-uid",
    assumed_role_id="AROA1:eks-c-web-uid",
    credentials=Credentials("ASIA1", "secret", "session", 1_900_000_000.0),
)


def test_the_answer_round_trips() -> None:
    wire = ROLE.to_wire()
    assert wire["credentials"]["expiration"] == 1_900_000_000
    assert parse_assume_response(json.loads(json.dumps(wire))) == ROLE


def test_the_sdk_answer() -> None:
    assert sdk_credentials(ROLE) == {
        "AccessKeyId": "ASIA1",
        "SecretAccessKey": "secret",
        "Token": "session",
        "AccountId": "111122223333",
        "Expiration": "2030-03-17T17:46:40Z",
    }


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(ROLE)
    assert "secret" not in shown.replace("SecretAccessKey", "")
    assert "session'" not in shown


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"credentials": {"expiration": "soon"}},
        {**ROLE.to_wire(), "credentials": {**ROLE.to_wire()["credentials"], "expiration": True}},
        {**ROLE.to_wire(), "subject": {"namespace": 1, "serviceAccount": "x"}},
    ],
)
def test_a_malformed_answer_is_an_internal_error(broken: Any) -> None:
    with pytest.raises(InternalServerException):
        parse_assume_response(broken)


def test_every_error_type_of_the_model() -> None:
    assert {code: cls.status for code, cls in EKS_AUTH_ERRORS.items()} == {
        "AccessDeniedException": 400,
        "ExpiredTokenException": 400,
        "InternalServerException": 500,
        "InvalidParameterException": 400,
        "InvalidRequestException": 400,
        "InvalidTokenException": 400,
        "ResourceNotFoundException": 404,
        "ServiceUnavailableException": 503,
        "ThrottlingException": 429,
    }


@pytest.mark.parametrize(
    "arn",
    ["not-an-arn", "arn:aws:iam::111122223333:role/app", "arn:aws:sts::111122223333:user/x"],
)
def test_the_sdk_gets_no_account_from_an_arn_that_is_not_an_assumed_role(arn: str) -> None:
    assert sdk_credentials(dataclasses.replace(ROLE, assumed_role_arn=arn))["AccountId"] == ""
