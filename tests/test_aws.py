"""ARNs and partitions: the one parser every part of the project reads ARNs with."""

from __future__ import annotations

import pytest

from webhook.aws import Arn, looks_like_role_arn, parse_arn, role_arn


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        (
            "arn:aws:iam::111122223333:role/app",
            ("aws", "iam", "", "111122223333", "role/app"),
        ),
        (
            "arn:aws-cn:iam::111122223333:oidc-provider/oidc.example.com/id/AB:CD",
            ("aws-cn", "iam", "", "111122223333", "oidc-provider/oidc.example.com/id/AB:CD"),
        ),
        ("arn:aws:s3:::bucket", ("aws", "s3", "", "", "bucket")),
    ],
)
def test_an_arn_splits_at_its_first_five_colons(text, parts):
    arn = parse_arn(text)
    assert arn == Arn(*parts)
    assert str(arn) == text


@pytest.mark.parametrize(
    "text", ["", "arn", "arn:aws:iam::1", "urn:aws:iam::111122223333:role/x", "arn::iam:::x"]
)
def test_what_is_not_an_arn_is_none(text):
    assert parse_arn(text) is None


@pytest.mark.parametrize(
    ("text", "is_role"),
    [
        ("arn:aws:iam::111122223333:role/app", True),
        ("arn:aws-us-gov:iam::111122223333:role/path/app", True),
        ("arn:aws:iam::111122223333:role/", False),
        ("arn:aws:iam::11112222333:role/app", False),
        ("arn:aws:iam:us-east-1:111122223333:role/app", False),
        ("arn:aws:iam::111122223333:user/app", False),
        ("arn:aws:sts::111122223333:role/app", False),
        ("arn:AWS:iam::111122223333:role/app", False),
        ("arn:aws:iam::111122223333:role/a b", False),
    ],
)
def test_iam_roles_are_recognised_strictly(text, is_role):
    arn = parse_arn(text)
    assert arn is not None
    assert arn.is_iam_role is is_role


def test_a_composed_role_arn_is_a_role():
    text = role_arn("aws-cn", "111122223333", "reader")
    assert text == "arn:aws-cn:iam::111122223333:role/reader"
    arn = parse_arn(text)
    assert arn is not None
    assert arn.is_iam_role


@pytest.mark.parametrize(
    ("text", "looks"),
    [
        ("arn:aws:iam::111122223333:role/app", True),
        ("arn:aws-cn:iam::111122223333:role/a/b@c+d=e,f.g-h_i", True),
        ("arn:aws:iam::111122223333:role/é", False),
        ("reader", False),
    ],
)
def test_upstreams_advisory_role_check(text, looks):
    assert looks_like_role_arn(text) is looks
