"""The classifier's rules are narrow: each allowed deviation passes, near misses do not.

No cluster: these run with the fast tiers and guard the rules the differential tier relies on.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from tests.differential import compare
from tests.differential.compare import (
    CM_AUDIENCE,
    CM_EXPIRATION,
    CM_STS,
    DENIED,
    DROPPED_UNKNOWN,
    DROPPED_ZERO,
    GO_DEFAULT,
    JITTER,
    NO_TYPEMETA,
    QUANTITY,
    RESENT,
    Tally,
    compare_reviews,
    diff,
    quantity,
)
from tests.differential.generator import BY_NAME, Case, generate, world

ROLE_ENV = [
    {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/app"},
    {
        "name": "AWS_WEB_IDENTITY_TOKEN_FILE",
        "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    },
]


def _case(identity: str = "role", **container: Any) -> Case:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "serviceAccountName": identity,
            "containers": [{"name": "app", "image": "i", **container}],
        },
    }
    return Case(0, 1, "diff-alpha", pod, BY_NAME[identity])


def _answer(
    review: dict[str, Any], patch: list[dict[str, Any]] | None, *, echo: bool
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
    if patch is not None:
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        response["patchType"] = "JSONPatch"
    answer: dict[str, Any] = {"response": response}
    if echo:
        answer = {"kind": review["kind"], "apiVersion": review["apiVersion"], **answer}
    return answer


def _run(
    case: Case, ours: list[dict[str, Any]] | None, upstream: list[dict[str, Any]] | None
) -> Tally:
    tally = Tally()
    review = case.review()
    compare_reviews(
        case, review, _answer(review, ours, echo=True), _answer(review, upstream, echo=False), tally
    )
    return tally


def _containers(case: Case, **changes: Any) -> list[dict[str, Any]]:
    containers = copy.deepcopy(case.pod["spec"]["containers"])
    containers[0].update(changes)
    return containers


def test_identical_patches_need_no_rule_but_the_envelope() -> None:
    case = _case()
    ops = [{"op": "add", "path": "/spec/containers/0/env", "value": ROLE_ENV}]
    tally = _run(case, ops, ops)
    assert not tally.unclassified
    assert set(tally.classes) == {NO_TYPEMETA}
    assert tally.identical == 1


def test_a_missing_variable_is_unclassified() -> None:
    case = _case()
    ours = [{"op": "add", "path": "/spec/containers/0/env", "value": ROLE_ENV[:1]}]
    upstream = [{"op": "add", "path": "/spec/containers", "value": _containers(case, env=ROLE_ENV)}]
    tally = _run(case, ours, upstream)
    assert len(tally.unclassified) == 1
    assert (
        "spec.containers[app].env[AWS_WEB_IDENTITY_TOKEN_FILE]: ours <absent>"
        in tally.unclassified[0]
    )
    assert "pod 0 (seed 1, diff-alpha/p)" in tally.unclassified[0]


def test_variables_in_another_order_are_unclassified() -> None:
    case = _case()
    ours = [{"op": "add", "path": "/spec/containers/0/env", "value": ROLE_ENV[::-1]}]
    upstream = [{"op": "add", "path": "/spec/containers", "value": _containers(case, env=ROLE_ENV)}]
    tally = _run(case, ours, upstream)
    assert any("env.<order>" in line for line in tally.unclassified)


def test_upstream_dropping_an_unknown_field_is_2a_but_ours_dropping_one_is_not() -> None:
    case = _case(futureField={"on": True})
    ours = [{"op": "add", "path": "/spec/containers/0/env", "value": ROLE_ENV}]
    without = _containers(case, env=ROLE_ENV)
    del without[0]["futureField"]
    tally = _run(case, ours, [{"op": "add", "path": "/spec/containers", "value": without}])
    assert not tally.unclassified
    assert tally.classes[DROPPED_UNKNOWN] == 1
    # A field Go knows (startupProbe) dropped by upstream is not "unknown".
    case = _case(startupProbe={"exec": {"command": ["true"]}})
    without = _containers(case, env=ROLE_ENV)
    del without[0]["startupProbe"]
    tally = _run(case, ours, [{"op": "add", "path": "/spec/containers", "value": without}])
    assert len(tally.unclassified) == 1


def test_zero_values_defaults_and_quantities() -> None:
    case = _case(
        stdin=False,
        resources={"requests": {"cpu": "0.5", "memory": "1024Mi"}},
        readinessProbe={"grpc": {"port": 9000}},
    )
    ours = [{"op": "add", "path": "/spec/containers/0/env", "value": ROLE_ENV}]
    rewritten = _containers(
        case,
        env=ROLE_ENV,
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
        readinessProbe={"grpc": {"port": 9000, "service": None}},
    )
    del rewritten[0]["stdin"]
    tally = _run(case, ours, [{"op": "add", "path": "/spec/containers", "value": rewritten}])
    assert not tally.unclassified, tally.report()
    assert (tally.classes[DROPPED_ZERO], tally.classes[QUANTITY], tally.classes[GO_DEFAULT]) == (
        1,
        2,
        1,
    )
    # A quantity of another value is a real difference.
    wrong = copy.deepcopy(rewritten)
    wrong[0]["resources"]["requests"]["cpu"] = "501m"
    tally = _run(case, ours, [{"op": "add", "path": "/spec/containers", "value": wrong}])
    assert len(tally.unclassified) == 1


def test_resent_arrays_only_when_they_change_nothing() -> None:
    case = _case(env=ROLE_ENV)
    unchanged = [
        {"op": "add", "path": "/spec/containers", "value": _containers(case, resources={})}
    ]
    tally = _run(case, None, unchanged)
    assert not tally.unclassified
    assert tally.classes[RESENT] == 1
    changed = [{"op": "add", "path": "/spec/containers", "value": _containers(case, image="other")}]
    tally = _run(case, None, changed)
    assert any("no patch but upstream's changes the Pod" in line for line in tally.unclassified)


def _volume(audience: str | None, expiration: int, name: str = "aws-iam-token") -> dict[str, Any]:
    token: dict[str, Any] = {"expirationSeconds": expiration, "path": "token"}
    if audience is not None:
        token["audience"] = audience
    return {"name": name, "projected": {"sources": [{"serviceAccountToken": token}]}}


@pytest.mark.parametrize(
    ("identity", "expected"),
    [("cm-partial", {CM_AUDIENCE: 1, CM_STS: 1}), ("role", {})],
)
def test_configmap_fallbacks_only_for_entries_without_the_field(
    identity: str, expected: dict[str, int]
) -> None:
    case = _case(identity)
    sts = {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}
    ours = [
        {"op": "add", "path": "/spec/volumes", "value": [_volume("sts.amazonaws.com", 86400)]},
        {"op": "add", "path": "/spec/containers/0/env", "value": [sts, *ROLE_ENV]},
    ]
    upstream = [
        {"op": "add", "path": "/spec/volumes", "value": [_volume(None, 86400)]},
        {"op": "add", "path": "/spec/containers", "value": _containers(case, env=ROLE_ENV)},
    ]
    tally = _run(case, ours, upstream)
    if expected:
        assert not tally.unclassified
        assert {k: tally.classes[k] for k in expected} == expected
    else:
        assert len(tally.unclassified) == 2


def test_configmap_expiration_and_jitter() -> None:
    case = _case("cm-lowexp")
    ours = [{"op": "add", "path": "/spec/volumes", "value": [_volume("cm-aud", 600)]}]
    upstream = [{"op": "add", "path": "/spec/volumes", "value": [_volume("cm-aud", 300)]}]
    assert _run(case, ours, upstream).classes[CM_EXPIRATION] == 1
    assert _run(_case("cm-exact"), ours, upstream).unclassified
    cc = _case("cc")
    name = "eks-pod-identity-token"
    ours = [{"op": "add", "path": "/spec/volumes", "value": [_volume("a", 80000, name)]}]
    upstream = [{"op": "add", "path": "/spec/volumes", "value": [_volume("a", 86000, name)]}]
    assert _run(cc, ours, upstream).classes[JITTER] == 1
    upstream = [{"op": "add", "path": "/spec/volumes", "value": [_volume("a", 3600, name)]}]
    assert _run(cc, ours, upstream).unclassified


def test_denials_only_for_undecodable_pods() -> None:
    case = _case()
    review = case.review()
    denial = {
        "response": {
            "uid": review["request"]["uid"],
            "allowed": False,
            "status": {"message": "json: cannot unmarshal number 3000000000 into Go struct field"},
        }
    }
    ours = _answer(review, None, echo=True)
    tally = Tally()
    compare_reviews(case, review, ours, denial, tally)
    assert tally.unclassified  # not tagged undecodable
    case.tags.append("undecodable-int32-overflow")
    tally = Tally()
    compare_reviews(case, review, ours, denial, tally)
    assert not tally.unclassified
    assert tally.classes[DENIED] == 1


def test_uid_and_echo_are_checked() -> None:
    case = _case()
    review = case.review()
    ours = _answer(review, None, echo=True)
    ours["response"]["uid"] = "other"
    tally = Tally()
    compare_reviews(case, review, ours, _answer(review, None, echo=True), tally)
    assert any("ours answered uid 'other'" in line for line in tally.unclassified)


def test_quantities() -> None:
    assert quantity("0.5") == quantity("500m")
    assert quantity("1Gi") == quantity("1024Mi")
    assert quantity("1e3") == quantity("1k")
    assert quantity("1e3m") is None
    assert quantity("abc") is None


def test_diff_aligns_named_lists() -> None:
    a = [{"name": "x", "v": 1}, {"name": "y", "v": 2}]
    b = [{"name": "x", "v": 1}, {"name": "y", "v": 3}]
    (d,) = diff(a, b, a)
    assert compare.render_path(d.path) == "[y].v"


def test_generator_is_deterministic_and_varied() -> None:
    first, second = generate(7, 300), generate(7, 300)
    assert [c.pod for c in first] == [c.pod for c in second]
    assert first[0].pod != generate(8, 1)[0].pod
    tags = {tag for case in first for tag in case.tags}
    for wanted in ("sidecar", "windows", "pre-mutated", "startup-probe", "future-field"):
        assert any(tag.startswith(wanted) for tag in tags), wanted
    state = world()
    assert state.container_credentials["identities"]
    assert "*/cm-wild" in json.loads(state.config_map["data"]["config"])
