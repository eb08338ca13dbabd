"""The association model: every malformed object is refused with a message naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.reviews import role_arn
from webhook.podidentity.associations import (
    MAX_SESSION_POLICY,
    AssociationError,
    AssociationIndex,
    parse_association,
)

ROLE = role_arn("app")
TARGET = "arn:aws:iam::444455556666:role/target"


def obj(
    name: str = "app", namespace: str = "team-a", uid: str = "0b1c", **spec: Any
) -> dict[str, Any]:
    body = {"serviceAccountName": name, "roleArn": ROLE, **spec}
    return {
        "apiVersion": "podidentity.pod-identity-webhook.io/v1alpha1",
        "kind": "PodIdentityAssociation",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 3},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def test_a_minimal_association() -> None:
    association = parse_association(obj(uid="6f1e2d3c-aaaa-bbbb-cccc-000011112222"))
    assert association.key == ("team-a", "app")
    assert association.role_arn == ROLE
    assert association.effective_role == ROLE
    assert association.external_id == ""
    assert association.generation == 3
    assert association.association_id == "a-6f1e2d3caaaabbbbc"


def test_chaining_defaults_the_external_id_to_the_uid() -> None:
    association = parse_association(obj(targetRoleArn=TARGET))
    assert association.effective_role == TARGET
    assert association.external_id == "0b1c"
    explicit = parse_association(obj(targetRoleArn=TARGET, externalId="team-a-app"))
    assert explicit.external_id == "team-a-app"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec": None}, "spec is missing"),
        ({"spec": {"roleArn": ROLE}}, "serviceAccountName is required"),
        ({"spec": {"serviceAccountName": "app"}}, "roleArn is required"),
        ({"spec": {"serviceAccountName": "app", "roleArn": ""}}, "roleArn must not be empty"),
        ({"spec": {"serviceAccountName": "app", "roleArn": 7}}, "roleArn must be a string"),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": "arn:aws:iam::1:role/x"}},
            "not an IAM role ARN",
        ),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": "arn:aws:iam::111122223333:user/x"}},
            "not an IAM role ARN",
        ),
        (
            {"spec": {"serviceAccountName": "other", "roleArn": ROLE}},
            "one association per ServiceAccount",
        ),
        ({"spec": {"serviceAccountName": "App_1", "roleArn": ROLE}}, "not a valid name"),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": ROLE, "targetRoleArn": "nope"}},
            "targetRoleArn",
        ),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": ROLE, "externalId": "x1"}},
            "only used with",
        ),
        (
            {
                "spec": {
                    "serviceAccountName": "app",
                    "roleArn": ROLE,
                    "targetRoleArn": TARGET,
                    "externalId": "a b",
                }
            },
            "externalId must be",
        ),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": ROLE, "disableSessionTags": "yes"}},
            "must be a boolean",
        ),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": ROLE, "sessionPolicy": "{"}},
            "not JSON",
        ),
        (
            {"spec": {"serviceAccountName": "app", "roleArn": ROLE, "sessionPolicy": "[]"}},
            "with a Statement",
        ),
        (
            {
                "spec": {
                    "serviceAccountName": "app",
                    "roleArn": ROLE,
                    "sessionPolicy": " " * (MAX_SESSION_POLICY + 1),
                }
            },
            "at most 2048",
        ),
        ({"metadata": {"name": "app"}}, "metadata.namespace"),
        ({"metadata": None}, "metadata is missing"),
    ],
)
def test_malformed_associations_are_refused(change: dict[str, Any], message: str) -> None:
    body = obj()
    body.update(change)
    with pytest.raises(AssociationError, match=message):
        parse_association(body)


def test_not_an_object() -> None:
    with pytest.raises(AssociationError, match="not a JSON object"):
        parse_association(["x"])


def test_a_session_policy_is_kept_verbatim() -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    assert parse_association(obj(sessionPolicy=policy)).session_policy == policy


def test_the_index_follows_list_and_events() -> None:
    assert not AssociationIndex().synced
    index = AssociationIndex()
    problems = index.replace([obj(), obj(name="bad", roleArn="nope"), "junk"])
    assert index.synced
    assert len(index) == 1
    assert index.get("team-a", "app") is not None
    assert len(problems) == 2
    assert ("team-a", "bad") in index.invalid
    index.put(obj(name="db"))
    assert index.keys() == {("team-a", "app"), ("team-a", "db")}
    # An update that breaks an object removes it; a fix brings it back.
    assert index.put(obj(name="db", roleArn="nope")) is not None
    assert index.get("team-a", "db") is None
    index.put(obj(name="db"))
    index.delete(obj(name="db"))
    assert index.get("team-a", "db") is None
    assert [a.service_account for a in index.values()] == ["app"]


@pytest.mark.parametrize(
    "metadata",
    [None, "x", {"name": "app"}, {"namespace": "team-a"}, {"namespace": 1, "name": "app"}],
)
def test_objects_without_a_namespace_and_name_are_refused_and_deleting_them_is_a_no_op(
    metadata: Any,
) -> None:
    index = AssociationIndex()
    index.put(obj())
    broken = {**obj(), "metadata": metadata}
    assert index.put(broken) == "an association without metadata.namespace/name"
    index.delete(broken)
    index.delete("junk")
    assert index.keys() == {("team-a", "app")}
