"""Session tags, names, cache keys and token reviews."""

from __future__ import annotations

import base64
import json

import pytest

from webhook.errors import ExpiredTokenException, InvalidTokenException
from webhook.podidentity.associations import Association
from webhook.podidentity.session import (
    TAG_KEYS,
    CacheKey,
    PodIdentity,
    association_arn,
    cluster_arn,
    needs_refresh,
    session_name,
    session_tags,
)
from webhook.podidentity.tokens import pod_uid_claim, reviewed_identity, unverified_claims

POD = PodIdentity("team-a", "app", "web-7d9f8c-abcde", "6f1e2d3c-aaaa-bbbb-cccc-000011112222")
ASSOCIATION = Association("team-a", "app", "arn:aws:iam::111122223333:role/app", uid="u1")


def test_the_six_eks_tags() -> None:
    arn = cluster_arn("aws", "eu-west-1", "111122223333", "prod")
    assert arn == "arn:aws:eks:eu-west-1:111122223333:cluster/prod"
    assert session_tags("prod", arn, POD) == [
        {"Key": "eks-cluster-arn", "Value": arn},
        {"Key": "eks-cluster-name", "Value": "prod"},
        {"Key": "kubernetes-namespace", "Value": "team-a"},
        {"Key": "kubernetes-service-account", "Value": "app"},
        {"Key": "kubernetes-pod-name", "Value": "web-7d9f8c-abcde"},
        {"Key": "kubernetes-pod-uid", "Value": POD.pod_uid},
    ]
    assert len(TAG_KEYS) == 6


def test_the_session_name_is_stable_and_fits() -> None:
    name = session_name("a-very-long-cluster-name", POD)
    assert name == f"eks-a-very-lon-web-7d9f8c-{POD.pod_uid}"
    assert name == session_name("a-very-long-cluster-name", POD)
    assert len(name) <= 64
    odd = PodIdentity("n", "s", "a.b", "u")
    assert session_name("c_1", odd) == "eks-c_1-a.b-u"


def test_association_arn() -> None:
    arn = association_arn("arn:aws:eks:eu-west-1:111122223333:cluster/prod", "prod", ASSOCIATION)
    assert arn == "arn:aws:eks:eu-west-1:111122223333:podidentityassociation/prod/a-u1"


def test_cache_keys_change_with_the_association() -> None:
    import dataclasses

    key = CacheKey.of(POD, ASSOCIATION)
    assert key == CacheKey.of(POD, ASSOCIATION)
    for change in (
        {"role_arn": "arn:aws:iam::111122223333:role/other"},
        {"target_role_arn": "arn:aws:iam::111122223333:role/t", "external_id": "u1"},
        {"disable_session_tags": True},
        {"session_policy": '{"Statement": []}'},
    ):
        assert CacheKey.of(POD, dataclasses.replace(ASSOCIATION, **change)) != key
    assert CacheKey.of(dataclasses.replace(POD, pod_uid="other"), ASSOCIATION) != key


def test_refresh_margin() -> None:
    assert needs_refresh(1000.0, now=900.0, margin=100.0)
    assert not needs_refresh(1000.0, now=899.0, margin=100.0)


def review(**user: object) -> dict[str, object]:
    extra = {
        "authentication.kubernetes.io/pod-name": ["web"],
        "authentication.kubernetes.io/pod-uid": ["uid-1"],
        "authentication.kubernetes.io/node-name": ["node-a"],
    }
    return {
        "authenticated": True,
        "audiences": ["pods.eks.amazonaws.com"],
        "user": {"username": "system:serviceaccount:team-a:app", "extra": extra, **user},
    }


def test_a_pod_bound_token() -> None:
    identity = reviewed_identity(review(), "pods.eks.amazonaws.com")
    assert identity == PodIdentity("team-a", "app", "web", "uid-1", "node-a")


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (None, InvalidTokenException, "could not be reviewed"),
        (
            {
                "authenticated": False,
                "error": "[invalid bearer token, service account token has expired]",
            },
            ExpiredTokenException,
            "expired",
        ),
        (
            {"authenticated": False, "error": 'token audiences ["x"] is invalid'},
            InvalidTokenException,
            "audiences",
        ),
        ({**review(), "audiences": ["sts.amazonaws.com"]}, InvalidTokenException, "audience"),
        (review(username="admin"), InvalidTokenException, "not a ServiceAccount token"),
        (
            review(username="system:serviceaccount:onlyns"),
            InvalidTokenException,
            "not a ServiceAccount token",
        ),
        (review(extra={}), InvalidTokenException, "not bound to a Pod"),
        (
            review(extra={"authentication.kubernetes.io/pod-name": ["a", "b"]}),
            InvalidTokenException,
            "not bound to a Pod",
        ),
    ],
)
def test_refused_reviews(status: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        reviewed_identity(status, "pods.eks.amazonaws.com")


def test_unverified_claims() -> None:
    claims = {"exp": 5, "kubernetes.io": {"pod": {"uid": "u"}}}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert unverified_claims(f"h.{body}.s") == claims
    assert pod_uid_claim(claims) == "u"
    assert unverified_claims("h.%%%.s") == {}
    assert unverified_claims("only.two") == {}
    assert unverified_claims("h.WzFd.s") == {}  # [1]: not an object
    assert pod_uid_claim({"kubernetes.io": "x"}) == ""
