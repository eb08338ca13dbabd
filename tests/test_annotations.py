"""Sources parsed the way upstream's Go parsers read them."""

from __future__ import annotations

import dataclasses

import pytest

from webhook.admission.entries import (
    ConfigMapEntry,
    parse_config_map,
    parse_container_credentials,
    parse_service_account,
    parse_skip_containers,
)
from webhook.aws import partition_for_region
from webhook.config import MutationConfig

CONFIG = MutationConfig()
P = "eks.amazonaws.com/"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("sidecar", {"sidecar"}),
        ("a,b", {"a", "b"}),
        ("a, b", {"a", " b"}),
        ('"a",b', {"a", "b"}),
        ('"a,b",c', {"a,b", "c"}),
        ('"a""b"', {'a"b'}),
        ("a,", {"a", ""}),
        ("\n\na,b\nc", {"a", "b"}),
        ("a,b\r\n", {"a", "b"}),
        ("a\r", {"a"}),
        ('"multi\nline",x', {"multi\nline", "x"}),
        (" a ", {" a "}),
    ],
)
def test_skip_containers_is_the_first_csv_record(text, names):
    assert parse_skip_containers(text) == names


@pytest.mark.parametrize(
    "text", ["", "\n", "\n\n", 'a"b', '"a"b', '"unterminated', 'a,"b', 'x,"y"z']
)
def test_unparsable_skip_containers_skips_nothing(text):
    assert parse_skip_containers(text) is None


def test_unannotated_service_account_gets_the_flag_defaults():
    entry = parse_service_account(None, CONFIG)
    assert (entry.role_arn, entry.audience, entry.regional_sts, entry.token_expiration) == (
        "",
        "sts.amazonaws.com",
        False,
        86400,
    )
    assert entry.notes == ()


def test_annotations_override_the_flags():
    entry = parse_service_account(
        {
            P + "role-arn": "arn:aws:iam::111122223333:role/x",
            P + "audience": "",
            P + "sts-regional-endpoints": "T",
            P + "token-expiration": "+3600",
        },
        CONFIG,
    )
    assert (entry.role_arn, entry.audience, entry.regional_sts, entry.token_expiration) == (
        "arn:aws:iam::111122223333:role/x",
        "",
        True,
        3600,
    )


def test_invalid_values_fall_back_and_are_reported():
    config = dataclasses.replace(CONFIG, sts_regional_endpoint=True, token_expiration=7200)
    entry = parse_service_account(
        {P + "sts-regional-endpoints": "yes", P + "token-expiration": "1h"}, config
    )
    assert entry.regional_sts is True
    assert entry.token_expiration == 7200
    assert [n.code for n in entry.notes] == ["invalid-annotation", "invalid-annotation"]


def test_short_expiration_is_raised_and_reported():
    entry = parse_service_account({P + "token-expiration": "-5"}, CONFIG)
    assert entry.token_expiration == 600
    assert entry.notes[0].code == "expiration-clamped"


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111122223333:role/s3-reader",
        "arn:aws-cn:iam::111122223333:role/path/name@x+y=z,w.v",
        "arn:aws-us-gov:iam::111122223333:role/a_b",
    ],
)
def test_valid_role_arns_are_not_reported(arn):
    assert parse_service_account({P + "role-arn": arn}, CONFIG).notes == ()


@pytest.mark.parametrize(
    "arn",
    [
        "s3-reader",
        "arn:aws:iam::1234:role/x",
        "arn:aws:iam::111122223333:user/x",
        "arn:gcp:iam::111122223333:role/x",
    ],
)
def test_invalid_role_arns_are_used_but_reported(arn):
    entry = parse_service_account({P + "role-arn": arn}, CONFIG)
    assert entry.role_arn == arn
    assert entry.notes[0].code == "invalid-role-arn"


def test_composed_role_arn_uses_account_and_partition():
    config = dataclasses.replace(
        CONFIG, compose_role_arn=True, account_id="111122223333", partition="aws-cn"
    )
    assert parse_service_account({P + "role-arn": "path/s3-reader"}, config).role_arn == (
        "arn:aws-cn:iam::111122223333:role/path/s3-reader"
    )
    full = "arn:aws:iam::222233334444:role/x"
    assert parse_service_account({P + "role-arn": full}, config).role_arn == full
    # Upstream quirk kept: an empty annotation composes into an (invalid) ARN.
    empty = parse_service_account({P + "role-arn": ""}, config)
    assert empty.role_arn == "arn:aws-cn:iam::111122223333:role/"
    assert empty.notes[0].code == "invalid-role-arn"


def test_other_prefixes_are_ignored():
    config = dataclasses.replace(CONFIG, annotation_prefix="example.com")
    assert parse_service_account({P + "role-arn": "arn:x"}, config).role_arn == ""
    assert parse_service_account({"example.com/role-arn": "arn:x"}, config).role_arn == "arn:x"


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("eusc-de-east-1", "aws-eusc"),
        ("", "aws"),
    ],
)
def test_partition_for_region(region, partition):
    assert partition_for_region(region) == partition


def test_config_map_entries_and_defaults():
    config = dataclasses.replace(CONFIG, token_expiration=7200, sts_regional_endpoint=True)
    entries, notes = parse_config_map(
        '{"default/app": {"RoleARN": "arn:a", "Audience": "", "UseRegionalSTS": false,'
        ' "TokenExpiration": 3600}, "*/shared": {"rolearn": "arn:b"}, "a/b/c": {}}',
        config,
    )
    assert notes == ()
    assert entries == {
        "default/app": ConfigMapEntry("arn:a", "", False, 3600),
        "*/shared": ConfigMapEntry("arn:b", "sts.amazonaws.com", True, 7200),
        "a/b": ConfigMapEntry("", "sts.amazonaws.com", True, 7200),
    }


def test_config_map_case_insensitive_fields_last_wins():
    entries, _ = parse_config_map('{"n/s": {"RoleARN": "first", "ROLEARN": "second"}}', CONFIG)
    assert entries is not None
    assert entries["n/s"].role_arn == "second"


@pytest.mark.parametrize(
    "value",
    [
        '{"noslash": {"RoleARN": "arn:a"}}',
        '{"n/s": null}',
        '{"n/s": "arn:a"}',
        '{"n/s": {"RoleARN": 5}}',
        '{"n/s": {"UseRegionalSTS": "true"}}',
        '{"n/s": {"TokenExpiration": 1.5}}',
        '{"n/s": {"TokenExpiration": "3600"}}',
        '{"n/s": {"TokenExpiration": true}}',
        '{"n/s": {"Audience": []}}',
        '{"n/s": {"TokenExpiration": 99999999999999999999}}',
    ],
)
def test_bad_config_map_entries_are_skipped_not_fatal(value):
    entries, notes = parse_config_map(value, CONFIG)
    assert entries == {}
    assert notes[0].code == "config-map-entry-skipped"


def test_good_entries_survive_a_bad_neighbour():
    entries, notes = parse_config_map('{"bad": {}, "n/s": {"RoleARN": "arn:a"}}', CONFIG)
    assert entries is not None
    assert list(entries) == ["n/s"]
    assert len(notes) == 1


@pytest.mark.parametrize("value", [None, "", "{", "[1]", '"text"', "{'a': 1}"])
def test_unusable_config_documents_are_reported(value):
    entries, notes = parse_config_map(value, CONFIG)
    assert entries is None
    assert notes[0].code == "config-map-invalid"


def test_null_config_document_means_no_entries():
    assert parse_config_map("null", CONFIG) == ({}, ())


def test_container_credentials_file():
    text = '{"identities": [{"namespace": "a", "serviceAccount": "x"}, {"NAMESPACE": "b", "serviceaccount": "y", "extra": 1}, {"namespace": "a", "serviceAccount": "x"}]}'
    assert parse_container_credentials(text) == {("a", "x"), ("b", "y")}


@pytest.mark.parametrize("text", ["", "  \n", "null", "{}", '{"identities": null}'])
def test_empty_container_credentials_means_none(text):
    assert parse_container_credentials(text) == frozenset()


def test_missing_identity_fields_are_empty_strings():
    assert parse_container_credentials('{"identities": [{"namespace": "a"}, null]}') == {
        ("a", ""),
        ("", ""),
    }


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"identities": {}}', '{"identities": [1]}', '{"identities": [{"namespace": 1}]}'],
)
def test_malformed_container_credentials_raise(text):
    with pytest.raises(ValueError):
        parse_container_credentials(text)


@pytest.mark.parametrize("seconds", [300, 1, -5])
def test_config_map_expiration_below_ten_minutes_is_raised(seconds):
    entries, notes = parse_config_map(
        f'{{"n/s": {{"RoleARN": "arn:a", "TokenExpiration": {seconds}}}}}', CONFIG
    )
    assert entries is not None
    assert entries["n/s"].token_expiration == 600
    assert notes[0].code == "expiration-clamped"
