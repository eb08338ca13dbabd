"""End to end: the same Pods created through the API server, once per webhook; stored Pods compared.

Both webhooks are registered at once, each with `manifests/base/mutatingwebhook.yaml` (URL
clientConfig, `failurePolicy: Fail` so that a webhook error cannot pass for "no mutation") and
an objectSelector on the Pod label `differential.pod-identity-webhook/target` (`ours` or
`upstream`), so every Pod reaches exactly one webhook while both share the namespaces,
ServiceAccounts, ConfigMap and container-credentials file. Upstream v0.6.17 does not echo the
review's `kind`/`apiVersion`, which the API server requires for admission.k8s.io/v1, so its
registration asks for v1beta1 only, as upstream's own manifest does.

The stored Pods are compared after removing what differs per object: uid, creationTimestamp,
resourceVersion, managedFields, the (generated) name, the target label, and the random suffix
of the `kube-api-access-xxxxx` volume.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.compare import (
    CM_REJECTED,
    Tally,
    applied_entry,
    compare_pods,
)
from tests.differential.conftest import SELECTOR, Pair, record_report
from tests.differential.generator import COUNT, NAMESPACES, SEED, Case, generate
from tests.e2e.cluster import Cluster, WebhookProcess
from tests.e2e.kube import Answer
from tests.e2e.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TARGET_LABEL = "differential.pod-identity-webhook/target"
SAMPLE = 80
PER_IDENTITY = 3
KUBE_API_ACCESS = re.compile(r"^kube-api-access-[a-z0-9]{5}$")


def _configuration(cluster: Cluster, webhook: WebhookProcess, target: str) -> dict[str, Any]:
    document = cluster.webhook_configuration(f"differential-{target}", webhook, SELECTOR)
    for hook in document["webhooks"]:
        hook["failurePolicy"] = "Fail"
        hook["timeoutSeconds"] = 10
        hook.setdefault("objectSelector", {}).setdefault("matchExpressions", []).append(
            {"key": TARGET_LABEL, "operator": "In", "values": [target]}
        )
        if target == "upstream":
            hook["admissionReviewVersions"] = ["v1beta1"]
    return document


@pytest.fixture(scope="module")
def registered(pair: Pair) -> Iterator[Pair]:
    cluster = pair.cluster
    names = [
        cluster.register(_configuration(cluster, webhook, target))
        for webhook, target in ((pair.ours, "ours"), (pair.upstream, "upstream"))
    ]
    try:
        for target in ("ours", "upstream"):
            marker = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"marker-{target}",
                    "namespace": NAMESPACES[0],
                    "labels": {TARGET_LABEL: target},
                },
                "spec": {
                    "serviceAccountName": "role",
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            }

            def mutated(body: dict[str, Any] = marker) -> bool:
                answer = cluster.admin.create(body, dry_run=True)
                env = answer["spec"]["containers"][0].get("env") or []
                return any(item["name"] == "AWS_ROLE_ARN" for item in env)

            wait_until(mutated, timeout=30, what=f"the API server to call webhook {target}")
        yield pair
    finally:
        for name in names:
            cluster.unregister(name)


def sample(cases: list[Case]) -> list[Case]:
    """Storable Pods whose ServiceAccount exists (the API server refuses the others before any
    webhook): a few of every identity first, then evenly spread ones up to SAMPLE."""
    eligible = [
        c
        for c in cases
        if c.storable and (c.identity is None or c.identity.annotations is not None)
    ]
    chosen: dict[int, Case] = {}
    per: Counter[str] = Counter()
    for case in eligible:
        key = case.identity.name if case.identity else "<none>"
        if per[key] < PER_IDENTITY:
            per[key] += 1
            chosen[case.index] = case
    step = max(1, len(eligible) // SAMPLE)
    for case in eligible[::step]:
        if len(chosen) >= SAMPLE:
            break
        chosen.setdefault(case.index, case)
    return sorted(chosen.values(), key=lambda c: c.index)


def _body(case: Case, target: str) -> dict[str, Any]:
    pod = copy.deepcopy(case.pod)
    metadata = pod["metadata"]
    metadata["namespace"] = case.namespace
    metadata.setdefault("labels", {})[TARGET_LABEL] = target
    if "name" in metadata:
        metadata["name"] = f"{metadata['name']}-{target}"
    else:
        metadata["generateName"] = f"{metadata['generateName']}{target}-"
    return pod


def normalise(stored: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(stored)
    metadata = pod["metadata"]
    for key in (
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "managedFields",
        "name",
        "generateName",
    ):
        metadata.pop(key, None)
    metadata.get("labels", {}).pop(TARGET_LABEL, None)
    spec = pod["spec"]
    for volume in spec.get("volumes") or []:
        if KUBE_API_ACCESS.match(volume["name"]):
            volume["name"] = "kube-api-access"
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for mount in container.get("volumeMounts") or []:
            if KUBE_API_ACCESS.match(mount["name"]):
                mount["name"] = "kube-api-access"
    return pod


def _message(body: Any) -> str:
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def test_same_pods_stored(registered: Pair, request: pytest.FixtureRequest) -> None:
    kube = registered.cluster.admin
    cases = sample(generate(SEED, COUNT))
    tally = Tally()
    injected = 0
    for case in cases:
        tally.compared += 1
        answers = {}
        for target in ("ours", "upstream"):
            body = _body(case, target)
            answers[target] = kube.call("POST", f"/api/v1/namespaces/{case.namespace}/pods", body)
        for side, answer in answers.items():
            if "failed calling webhook" in _message(answer.body):
                tally.fail(case, f"{side}: {_message(answer.body)}")
        injected += _compare_stored(case, answers["ours"], answers["upstream"], tally)
    text = f"stored Pods ({len(cases)} of seed {SEED}, created once per webhook):\n{tally.report()}"
    record_report(request.config, text)
    (registered.cluster.workdir / "stored-report.txt").write_text(text + "\n", encoding="utf-8")
    assert not tally.unclassified, text
    assert tally.outcomes["both stored"] >= len(cases) // 2, text
    assert injected > 0, text
    assert tally.classes[CM_REJECTED] > 0, text


def _compare_stored(case: Case, ours: Answer, upstream: Answer, tally: Tally) -> bool:
    """Classify what the API server did with both Pods; whether ours got credentials."""
    if ours.status == 201 and upstream.status == 201:
        tally.outcomes["both stored"] += 1
        before = len(tally.unclassified)
        seen = compare_pods(
            case,
            normalise(ours.body),
            normalise(upstream.body),
            case.pod,
            tally,
            where="stored: ",
        )
        for name in seen:
            tally.pods_by_class[name] += 1
        if not seen and len(tally.unclassified) == before:
            tally.identical += 1
        return any(
            e["name"] in ("AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
            for c in ours.body["spec"]["containers"]
            for e in c.get("env") or []
        )
    if ours.status == upstream.status and ours.status >= 400:
        tally.outcomes["both rejected"] += 1
        reasons = [
            a.body.get("reason") if isinstance(a.body, dict) else None for a in (ours, upstream)
        ]
        if reasons[0] != reasons[1]:
            tally.fail(
                case, f"rejected for different reasons: ours {reasons[0]}, upstream {reasons[1]}"
            )
        return False
    entry = applied_entry(case.identity)
    low = entry is not None and 0 != entry.get("TokenExpiration", 0) < 600
    if (
        ours.status == 201
        and upstream.status >= 400
        and low
        and ("expirationSeconds" in _message(upstream.body))
    ):
        tally.outcomes["only ours stored"] += 1
        tally.add(case, CM_REJECTED)
        tally.pods_by_class[CM_REJECTED] += 1
    else:
        tally.fail(
            case,
            f"ours HTTP {ours.status} ({_message(ours.body)[:200]}), "
            f"upstream HTTP {upstream.status} ({_message(upstream.body)[:200]})",
        )
    return False
