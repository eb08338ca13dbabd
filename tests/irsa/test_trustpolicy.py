"""webhook.irsa.trustpolicy: the IAM trust policy of a role and its annotated ServiceAccount."""

from __future__ import annotations

import pytest

from tests.support.irsa import HOST_PATH, ISSUER, PROVIDER_ARN
from tests.support.reviews import ACCOUNT, ROLE
from webhook.errors import ConfigError
from webhook.irsa.trustpolicy import (
    OidcProvider,
    parse_provider,
    parse_service_account,
    service_account_manifest,
    trust_policy,
)

PROVIDER = OidcProvider("aws", ACCOUNT, HOST_PATH)


def test_trust_policy_for_one_service_account():
    assert trust_policy(PROVIDER, [("default", "app")]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{HOST_PATH}:aud": "sts.amazonaws.com",
                        f"{HOST_PATH}:sub": "system:serviceaccount:default:app",
                    }
                },
            }
        ],
    }


def test_trust_policy_lists_several_subjects_once_each():
    condition = trust_policy(
        PROVIDER, [("a", "x"), ("b", "y"), ("a", "x")], audience="aud.example"
    )["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {
            f"{HOST_PATH}:aud": "aud.example",
            f"{HOST_PATH}:sub": ["system:serviceaccount:a:x", "system:serviceaccount:b:y"],
        }
    }


@pytest.mark.parametrize(
    ("pairs", "subjects"),
    [
        ([("team-a", "*")], "system:serviceaccount:team-a:*"),
        ([("*", "app")], "system:serviceaccount:*:app"),
        (
            [("prod", "app"), ("ci-*", "runner")],
            ["system:serviceaccount:prod:app", "system:serviceaccount:ci-*:runner"],
        ),
    ],
)
def test_patterns_use_string_like_for_every_subject(pairs, subjects):
    # Conditions under two operators must both hold, so exact names join the patterns there.
    condition = trust_policy(PROVIDER, pairs)["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {f"{HOST_PATH}:aud": "sts.amazonaws.com"},
        "StringLike": {f"{HOST_PATH}:sub": subjects},
    }


@pytest.mark.parametrize(
    ("text", "account", "partition"),
    [
        (PROVIDER_ARN, None, None),
        (PROVIDER_ARN, ACCOUNT, "aws"),
        (ISSUER, ACCOUNT, None),
        (HOST_PATH, ACCOUNT, "aws"),
    ],
)
def test_provider_as_arn_url_or_host(text, account, partition):
    assert parse_provider(text, account, partition) == PROVIDER
    assert parse_provider(text, account, partition).arn == PROVIDER_ARN


def test_provider_arn_in_another_partition():
    provider = parse_provider(
        "arn:aws-cn:iam::123456789012:oidc-provider/oidc.example.cn", None, None
    )
    assert provider == OidcProvider("aws-cn", "123456789012", "oidc.example.cn")


@pytest.mark.parametrize(
    ("text", "account", "partition", "message"),
    [
        (HOST_PATH, None, None, "--account-id is required"),
        ("http://oidc.example.com", ACCOUNT, None, "always https"),
        (PROVIDER_ARN, "999999999999", None, "differs from the provider ARN's account"),
        (PROVIDER_ARN, None, "aws-cn", "differs from the provider ARN's partition"),
        ("arn:aws:iam::12:oidc-provider/h", None, None, "12-digit"),
        ("arn:nope:iam::111122223333:oidc-provider/h", None, None, "partition"),
        ("https://h?x=1", ACCOUNT, None, "not an issuer"),
        ("", ACCOUNT, None, "not an issuer"),
    ],
)
def test_bad_provider_is_a_config_error(text, account, partition, message):
    with pytest.raises(ConfigError, match=message):
        parse_provider(text, account, partition)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default:app", ("default", "app")),
        ("kube-system:aws-node", ("kube-system", "aws-node")),
        ("ns:name.with.dots", ("ns", "name.with.dots")),
        ("ns:*", ("ns", "*")),
        ("*:sa", ("*", "sa")),
        ("team-*:ci-?", ("team-*", "ci-?")),
    ],
)
def test_service_account_pairs(text, expected):
    assert parse_service_account(text) == expected


@pytest.mark.parametrize("text", ["app", ":app", "ns:", "NS:app", "ns:App", "a:b:c", "ns:a b"])
def test_bad_service_account_pairs(text):
    with pytest.raises(ValueError):
        parse_service_account(text)


def test_service_account_manifest():
    assert service_account_manifest("default", "app", ROLE) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "app",
            "namespace": "default",
            "annotations": {"eks.amazonaws.com/role-arn": ROLE},
        },
    }


def test_service_account_manifest_with_prefix_and_audience():
    manifest = service_account_manifest(
        "ns", "app", ROLE, annotation_prefix="irsa.example.com", audience="custom"
    )
    assert manifest["metadata"]["annotations"] == {
        "irsa.example.com/role-arn": ROLE,
        "irsa.example.com/audience": "custom",
    }


def test_a_trust_policy_needs_a_service_account():
    with pytest.raises(ConfigError, match="at least one"):
        trust_policy(PROVIDER, [])
