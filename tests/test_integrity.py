"""Injection integrity (issue 16, item 1): what the Pod auditor keeps of a Pod, and when it
finds one lacking the credentials `decide` would give it now."""

from __future__ import annotations

import copy
import tracemalloc
import uuid
from typing import Any, cast

import jsonpatch
import pytest
from hypothesis import given, settings

from tests.support.reviews import role_arn
from tests.test_properties import lowest, pods, setups
from webhook.admission.entries import parse_service_account
from webhook.admission.integrity import Finding, Interner, Owner, SlimPod, missing, slim
from webhook.admission.mutation import decide
from webhook.admission.wire import Pod
from webhook.audit.auditor import deletion_refusal
from webhook.config import MutationConfig
from webhook.sources.manifests import StaticSources

ROLE = role_arn("app")
PREFIX = "eks.amazonaws.com"
CONFIG = MutationConfig()


def stored(
    *containers: dict[str, Any],
    namespace: str = "team-a",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    service_account: str = "app",
) -> dict[str, Any]:
    """A Pod as the API server lists it, with the fields the auditor has to ignore."""
    metadata: dict[str, Any] = {
        "name": f"pod-{uuid.uuid4().hex[:5]}",
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "12345",
        "creationTimestamp": "2026-12-02T06:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "5d9c7f", **(labels or {})},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-01", **(annotations or {})},
        "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}],
    }
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": service_account,
            "containers": list(containers) or [{"name": "app", "image": "web:1"}],
            "volumes": [{"name": "kube-api-access-x1y2z", "projected": {"sources": []}}],
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]},
    }


def sources(annotations: dict[str, str] | None = None) -> StaticSources:
    found = StaticSources()
    given_annotations = {f"{PREFIX}/role-arn": ROLE} if annotations is None else annotations
    found.service_accounts["team-a/app"] = parse_service_account(given_annotations, CONFIG)
    return found


def judged(obj: dict[str, Any], found: StaticSources | None = None) -> Finding | None:
    pod = slim(obj, PREFIX, Interner())
    assert pod is not None
    return missing(pod, found or sources(), CONFIG)


def mutated(obj: dict[str, Any], found: StaticSources | None = None) -> dict[str, Any]:
    namespace = obj["metadata"]["namespace"]
    pod = cast("Pod", obj)
    decision = decide(pod, namespace=namespace, sources=found or sources(), config=CONFIG)
    result: dict[str, Any] = jsonpatch.apply_patch(obj, list(decision.patch))
    return result


CONTROLLER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "web-5d9c7f",
    "uid": "rs-uid",
    "controller": True,
}


# --- what is kept -------------------------------------------------------------------------


def test_only_what_decide_reads_is_kept():
    obj = stored(
        {
            "name": "app",
            "image": "web:1",
            "env": [{"name": "AWS_REGION", "value": "x"}, {"name": "DATABASE_URL", "value": "y"}],
        },
        annotations={f"{PREFIX}/skip-containers": "sidecar"},
        owner=CONTROLLER,
    )
    pod = slim(obj, PREFIX, Interner())
    assert pod == SlimPod(
        namespace="team-a",
        name=obj["metadata"]["name"],
        uid=obj["metadata"]["uid"],
        service_account="app",
        annotations=((f"{PREFIX}/skip-containers", "sidecar"),),
        init_containers=(),
        containers=(pod.containers[0],) if pod else (),
        owner=Owner("ReplicaSet", "web-5d9c7f", "rs-uid"),
        created="2026-12-02T06:00:00Z",
    )
    assert pod is not None
    assert pod.containers[0].name == "app"
    assert pod.containers[0].variables == frozenset({"AWS_REGION"})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"labels": {"eks.amazonaws.com/skip-pod-identity-webhook": "true"}}, "skip label"),
        ({"annotations": {"kubernetes.io/config.mirror": "abc"}}, "mirror Pod"),
        ({"namespace": "kube-system"}, "excluded namespace"),
    ],
)
def test_pods_the_webhook_is_never_asked_about_are_not_kept(change, reason):
    assert slim(stored(**change), PREFIX, Interner(), ["kube-system"]) is None, reason


@pytest.mark.parametrize(
    "broken",
    [
        {"metadata": None},
        {"metadata": {"name": "x", "namespace": "y"}},
        {"metadata": {"name": 1, "namespace": "y", "uid": "u"}},
        {"metadata": {"name": "x", "namespace": "y", "uid": "u"}, "spec": "nonsense"},
        {
            "metadata": {"name": "x", "namespace": "y", "uid": "u"},
            "spec": {"containers": [None, {"name": 3}, {"name": "ok", "env": "x"}]},
        },
    ],
)
def test_malformed_pods_are_skipped_or_reduced_without_a_crash(broken):
    pod = slim(broken, PREFIX, Interner())
    if pod is not None:
        assert [c.name for c in pod.containers] in ([], ["ok"])
        assert missing(pod, sources(), CONFIG) is None  # namespace y has no ServiceAccount


def test_the_owner_is_the_controller_reference_with_a_kind_name_and_uid():
    pod = stored()
    pod["metadata"]["ownerReferences"] = [
        "junk",
        {"kind": "Node", "name": "n1", "uid": "u1"},  # not the controller
        {"controller": True, "kind": 5, "name": "rs", "uid": "u2"},  # malformed
        CONTROLLER,
    ]
    kept = slim(pod, PREFIX, Interner())
    assert kept is not None
    assert kept.owner == Owner("ReplicaSet", "web-5d9c7f", "rs-uid")


def test_a_pod_decide_rejects_is_not_reported_and_does_not_stop_the_sweep():
    # slim() never makes such a Pod, but missing() runs in the auditor's loop: a SlimPod built
    # some other way that decide() refuses (a ServiceAccount name that is no string) is judged
    # as missing nothing instead of raising out of the sweep.
    odd = slim_pod(service_account=cast("str", 7))
    assert missing(odd, sources(), CONFIG) is None


def test_pods_of_one_template_share_their_containers_and_owner():
    interner = Interner()
    template = {"name": "app", "image": "web:1", "env": [{"name": "AWS_REGION", "value": "x"}]}
    first = slim(stored(copy.deepcopy(template), owner=CONTROLLER), PREFIX, interner)
    second = slim(stored(copy.deepcopy(template), owner=dict(CONTROLLER)), PREFIX, interner)
    assert first is not None
    assert second is not None
    assert first.containers is second.containers
    assert first.owner is second.owner
    assert first.uid != second.uid


def test_memory_per_ten_thousand_pods_stays_small():
    """The figure README states: measured, not assumed (benchmarks/audit_memory.py prints it
    with more detail)."""
    objects = [
        stored(
            {"name": "app", "image": "web:1", "env": [{"name": "PORT", "value": "8080"}]},
            {"name": "proxy", "image": "envoy:1"},
            owner={**CONTROLLER, "uid": f"rs-{i % 50}"},
        )
        for i in range(10_000)
    ]
    interner = Interner()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = {}
    for obj in objects:
        pod = slim(obj, PREFIX, interner)
        assert pod is not None
        kept[pod.uid] = pod
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / 10_000 < 1024, f"{grown / 10_000:.0f} bytes per Pod"


# --- what is missing ----------------------------------------------------------------------


def test_a_pod_admitted_without_the_webhook_is_missing_credentials():
    finding = judged(stored({"name": "app", "image": "x"}, {"name": "sidecar", "image": "y"}))
    assert finding is not None
    assert finding.containers == ("app", "sidecar")
    assert finding.method == "sts_web_identity"
    assert finding.role_arn == ROLE
    assert "ServiceAccount team-a/app calls for role" in finding.message
    assert "app, sidecar" in finding.message


def test_a_mutated_pod_is_not_missing_anything():
    assert judged(mutated(stored())) is None


def test_skipped_and_excluded_containers_are_not_missing_credentials():
    skipped = stored(annotations={f"{PREFIX}/skip-containers": "app"})
    assert judged(mutated(skipped)) is None
    assert judged(skipped) is None  # nothing to give: every container is skipped
    included = stored(
        {"name": "app", "image": "x"},
        {"name": "proxy", "image": "y"},
        annotations={f"{PREFIX}/include-containers": "app"},
    )
    finding = judged(included)
    assert finding is not None
    assert finding.containers == ("app",)


def test_variables_a_container_sets_itself_are_respected():
    own = stored({"name": "app", "image": "x", "env": [{"name": "AWS_ROLE_ARN", "value": "r"}]})
    assert judged(own) is None


def test_region_or_sts_settings_alone_are_not_missing_credentials():
    obj = mutated(stored())
    regional = MutationConfig(region="us-west-2", sts_regional_endpoint=True)
    pod = slim(obj, PREFIX, Interner())
    assert pod is not None
    assert missing(pod, sources(), regional) is None


@pytest.mark.parametrize("annotations", [{}, {f"{PREFIX}/role-arn": ""}])
def test_a_service_account_without_a_role_asks_for_nothing(annotations):
    assert judged(stored(), sources(annotations)) is None
    assert judged(stored(service_account="unknown")) is None


def test_container_credentials_are_judged_too():
    found = sources({})
    found.identities = frozenset({("team-a", "app")})
    finding = judged(stored(), found)
    assert finding is not None
    assert finding.method == "container_credentials"
    assert "EKS Pod Identity" in finding.message
    assert judged(mutated(stored(), found), found) is None


def test_a_container_role_is_missing_like_any_other():
    obj = stored(
        {"name": "app", "image": "x"},
        {"name": "shipper", "image": "y"},
        annotations={f"{PREFIX}/container-role-arn.shipper": "arn:aws:iam::111122223333:role/s"},
    )
    assert judged(obj) is not None
    assert judged(mutated(obj)) is None


@settings(max_examples=300, deadline=None)
@given(pods(), setups())
def test_the_auditor_agrees_with_the_admission(pod, setup):
    """A Pod the webhook mutated is never reported; an unmutated one is reported exactly when
    the admission would have added a credential variable."""
    found, config = setup
    pod["metadata"].update(namespace="default", uid="u-1")
    decision = decide(pod, namespace="default", sources=found, config=config, jitter=lowest)
    gets_credentials = any(
        isinstance(item, dict)
        and item.get("name") in ("AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
        for op in decision.patch
        if op["path"].endswith(("/env", "/env/-"))
        for item in (op["value"] if isinstance(op["value"], list) else [op["value"]])
    )
    before = slim(pod, PREFIX, Interner())
    assert before is not None
    assert (missing(before, found, config) is not None) == gets_credentials
    after = slim(jsonpatch.apply_patch(pod, list(decision.patch)), PREFIX, Interner())
    assert after is not None
    assert missing(after, found, config) is None


# --- deletion ------------------------------------------------------------------------------


def slim_pod(**changes: Any) -> SlimPod:
    pod = slim(stored(owner=CONTROLLER), PREFIX, Interner())
    assert pod is not None
    return SlimPod(**{**{f: getattr(pod, f) for f in SlimPod.__slots__}, **changes})


def test_only_controller_owned_pods_outside_kube_system_are_deleted():
    assert deletion_refusal(slim_pod(), {}) is None
    refusal = deletion_refusal(slim_pod(owner=None), {})
    assert refusal is not None
    assert "no controller" in refusal
    refusal = deletion_refusal(slim_pod(namespace="kube-system"), {})
    assert refusal is not None
    assert "kube-system" in refusal


def test_a_replacement_that_comes_back_without_credentials_is_left_alone():
    earlier = {"rs-uid": "2026-12-02T05:59:59Z"}
    assert deletion_refusal(slim_pod(created="2026-12-02T05:59:00Z"), earlier) is None
    refusal = deletion_refusal(slim_pod(created="2026-12-02T06:00:00Z"), earlier)
    assert refusal is not None
    assert "still not reached" in refusal


def test_the_readme_shows_the_event_message_the_auditor_writes():
    from tests.test_docs import README, block_containing

    shown = block_containing(README.read_text(encoding="utf-8"), "MissingCredentials   pod/")
    finding = Finding(
        containers=("app",),
        method="sts_web_identity",
        service_account="team-a/app",
        role_arn=ROLE,
        role_source="service-account",
    )
    assert shown.rstrip().endswith(f"pod/report   {finding.message}")
