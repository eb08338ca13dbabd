"""The pure core: decisions, reasons and the additive patch."""

from __future__ import annotations

import copy
import dataclasses

import jsonpatch
import pytest

from tests.support.reviews import ROLE
from webhook.admission.entries import ConfigMapEntry, parse_service_account
from webhook.admission.mutation import decide
from webhook.admission.patches import escape_pointer
from webhook.admission.wire import Pod
from webhook.config import MutationConfig
from webhook.errors import InvalidPod
from webhook.gocompat import go_path_join
from webhook.sources.manifests import StaticSources

CONFIG = MutationConfig()


def sources(annotations=None, *, name="app", namespace="default", **kwargs) -> StaticSources:
    result = StaticSources(**kwargs)
    if annotations is not None:
        result.service_accounts[f"{namespace}/{name}"] = parse_service_account(annotations, CONFIG)
    return result


def pod(**spec):
    return {
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "c"}], **spec},
    }


def lowest(low, high):
    return low


@pytest.mark.parametrize(
    ("elements", "path"),
    [
        (("/var/run/x", "token"), "/var/run/x/token"),
        (("/var/run/x/", "token"), "/var/run/x/token"),
        (("//var//run/./x/", "token"), "/var/run/x/token"),
        (("/a/b/../c", "t"), "/a/c/t"),
        (("/..", "t"), "/t"),
        (("", "token"), "token"),
        (("", ""), ""),
        (("a/../..", "t"), "../t"),
        (("/", ""), "/"),
        ((".", ""), "."),
    ],
)
def test_go_path_join(elements, path):
    assert go_path_join(*elements) == path


def test_pointer_escaping():
    assert escape_pointer("eks.amazonaws.com/pod-identity") == "eks.amazonaws.com~1pod-identity"
    assert escape_pointer("a~b") == "a~0b"


def test_the_input_pod_is_never_modified():
    original = pod(volumes=[], initContainers=[{"name": "i", "env": []}])
    given = copy.deepcopy(original)
    decision = decide(
        given,
        namespace="default",
        sources=sources({"eks.amazonaws.com/role-arn": ROLE}),
        config=CONFIG,
    )
    assert decision.mutated
    assert given == original


def test_decision_explains_the_role_source():
    decision = decide(
        pod(),
        namespace="default",
        sources=sources({"eks.amazonaws.com/role-arn": ROLE}),
        config=CONFIG,
    )
    assert (decision.reason, decision.method, decision.role_source, decision.role_arn) == (
        "injected",
        "sts_web_identity",
        "service-account",
        ROLE,
    )
    assert decision.service_account == "default/app"


def test_missing_service_account_is_a_reason_and_a_note():
    decision = decide(pod(), namespace="default", sources=sources(), config=CONFIG)
    assert decision.patch == ()
    assert decision.reason == "service-account-not-found"
    assert decision.notes[0].code == "service-account-not-found"


def test_unannotated_service_account_is_not_a_warning():
    decision = decide(pod(), namespace="default", sources=sources({}), config=CONFIG)
    assert (decision.reason, decision.notes) == ("no-role", ())


def test_config_map_sources_are_named():
    cm = {"*/app": ConfigMapEntry(ROLE, "sts.amazonaws.com", False, 86400)}
    decision = decide(pod(), namespace="ns", sources=sources(config_map=cm), config=CONFIG)
    assert decision.role_source == "config-map-wildcard"
    cm["ns/app"] = ConfigMapEntry("", "", False, 86400)
    decision = decide(pod(), namespace="ns", sources=sources(config_map=cm), config=CONFIG)
    assert (decision.reason, decision.role_source) == ("no-role", "config-map")


def test_already_present_is_its_own_reason():
    srcs = sources({"eks.amazonaws.com/role-arn": ROLE})
    first = decide(pod(), namespace="default", sources=srcs, config=CONFIG)
    mutated = jsonpatch.apply_patch(pod(), list(first.patch))
    second = decide(mutated, namespace="default", sources=srcs, config=CONFIG)
    assert (second.patch, second.reason, second.method) == (
        (),
        "already-present",
        "sts_web_identity",
    )


def test_container_credentials_jitter_is_injected():
    srcs = sources({}, identities=frozenset({("default", "app")}))
    calls = []

    def jitter(low, high):
        calls.append((low, high))
        return 80000

    decision = decide(pod(), namespace="default", sources=srcs, config=CONFIG, jitter=jitter)
    assert calls == [(79200, 86400)]
    volume = decision.patch[1]["value"][0]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 80000
    assert [n.code for n in decision.notes] == ["expiration-jittered"]


def test_default_random_jitter_stays_in_range():
    srcs = sources({}, identities=frozenset({("default", "app")}))
    for _ in range(50):
        decision = decide(pod(), namespace="default", sources=srcs, config=CONFIG)
        seconds = decision.patch[1]["value"][0]["projected"]["sources"][0]["serviceAccountToken"][
            "expirationSeconds"
        ]
        assert 79200 <= seconds <= 86400


def test_pod_identity_label_with_another_value_is_set_like_upstream():
    srcs = sources({}, identities=frozenset({("default", "app")}))
    given = pod()
    given["metadata"]["labels"] = {"eks.amazonaws.com/pod-identity": "disabled", "x": "y"}
    decision = decide(given, namespace="default", sources=srcs, config=CONFIG, jitter=lowest)
    result = jsonpatch.apply_patch(given, list(decision.patch))
    assert result["metadata"]["labels"] == {"eks.amazonaws.com/pod-identity": "enabled", "x": "y"}


def test_pod_without_metadata_gets_the_label():
    srcs = sources({}, identities=frozenset({("default", "app")}))
    given: Pod = {"spec": {"serviceAccountName": "app", "containers": []}}
    decision = decide(given, namespace="default", sources=srcs, config=CONFIG, jitter=lowest)
    result = jsonpatch.apply_patch(given, list(decision.patch))
    assert result["metadata"] == {"labels": {"eks.amazonaws.com/pod-identity": "enabled"}}


def test_default_service_account_is_used_when_the_pod_names_none():
    given: Pod = {"spec": {"containers": [{"name": "c"}]}}
    srcs = sources({"eks.amazonaws.com/role-arn": ROLE}, name="default")
    assert not decide(given, namespace="default", sources=srcs, config=CONFIG).mutated
    assert decide(
        given, namespace="default", sources=srcs, config=CONFIG, default_service_account="default"
    ).mutated


def test_invalid_expiration_notes_keep_the_previous_value():
    given = pod()
    given["metadata"]["annotations"] = {"eks.amazonaws.com/token-expiration": "soon"}
    decision = decide(
        given,
        namespace="default",
        sources=sources({"eks.amazonaws.com/role-arn": ROLE}),
        config=CONFIG,
    )
    assert (
        decision.patch[0]["value"][0]["projected"]["sources"][0]["serviceAccountToken"][
            "expirationSeconds"
        ]
        == 86400
    )
    assert decision.notes[0].code == "invalid-annotation"


def test_service_account_notes_reach_the_decision():
    srcs = sources({"eks.amazonaws.com/role-arn": "not-an-arn"})
    decision = decide(pod(), namespace="default", sources=srcs, config=CONFIG)
    assert decision.mutated
    assert decision.notes[0].code == "invalid-role-arn"


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ([], "object"),
        ("pod", "object"),
        ({"spec": None}, "spec"),
        ({"spec": []}, "spec"),
        ({"metadata": [], "spec": {}}, "metadata"),
        ({"metadata": {"annotations": {"a": 1}}, "spec": {}}, "metadata.annotations"),
        ({"spec": {"serviceAccountName": 5}}, "serviceAccountName"),
        ({"spec": {"serviceAccountName": "app", "containers": {}}}, "spec.containers"),
        ({"spec": {"serviceAccountName": "app", "containers": ["c"]}}, "spec.containers[0]"),
        (
            {"spec": {"serviceAccountName": "app", "containers": [{"name": 1}]}},
            "spec.containers[0].name",
        ),
        (
            {"spec": {"serviceAccountName": "app", "containers": [{"env": "x"}]}},
            "spec.containers[0].env",
        ),
        (
            {"spec": {"serviceAccountName": "app", "containers": [{"env": [5]}]}},
            "spec.containers[0].env[0]",
        ),
        ({"spec": {"serviceAccountName": "app", "volumes": {}}}, "spec.volumes"),
        ({"spec": {"serviceAccountName": "app", "nodeSelector": []}}, "spec.nodeSelector"),
        (
            {"spec": {"serviceAccountName": "app", "initContainers": [{"volumeMounts": 3}]}},
            "volumeMounts",
        ),
    ],
)
def test_malformed_pods_raise_a_clear_error(bad, where):
    srcs = sources({"eks.amazonaws.com/role-arn": ROLE})
    with pytest.raises(InvalidPod, match=where.replace("[", r"\[").replace("]", r"\]")):
        decide(bad, namespace="default", sources=srcs, config=CONFIG)


def test_null_lists_are_treated_as_absent():
    given = pod(volumes=None, initContainers=None)
    given["spec"]["containers"][0].update(env=None, volumeMounts=None)
    decision = decide(
        given,
        namespace="default",
        sources=sources({"eks.amazonaws.com/role-arn": ROLE}),
        config=CONFIG,
    )
    result = jsonpatch.apply_patch(given, list(decision.patch))
    assert [v["name"] for v in result["spec"]["volumes"]] == ["aws-iam-token"]
    assert len(result["spec"]["containers"][0]["env"]) == 2
    assert result["spec"]["initContainers"] is None


def test_compose_config_does_not_touch_config_map_roles():
    config = dataclasses.replace(CONFIG, compose_role_arn=True, account_id="111122223333")
    cm = {"default/app": ConfigMapEntry("bare-name", "sts.amazonaws.com", False, 86400)}
    decision = decide(pod(), namespace="default", sources=sources(config_map=cm), config=config)
    assert decision.role_arn == "bare-name"


def test_unnamed_env_entries_mounts_and_volumes_count_as_the_empty_name():
    """An entry without a name is not a bad Pod (the API server defaults or refuses it); it
    is a name nobody asks for, so the credentials, the mount and the volume are still added."""
    unnamed = pod(
        containers=[{"name": "c", "env": [{"value": "x"}], "volumeMounts": [{"mountPath": "/m"}]}],
        volumes=[{"emptyDir": {}}],
    )
    decision = decide(
        unnamed,
        namespace="default",
        sources=sources({"eks.amazonaws.com/role-arn": ROLE}),
        config=CONFIG,
    )
    paths = [op["path"] for op in decision.patch]
    assert "/spec/volumes/0" in paths
    assert "/spec/containers/0/volumeMounts/-" in paths
    assert "/spec/containers/0/env/-" in paths
