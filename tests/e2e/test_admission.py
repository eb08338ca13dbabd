"""The webhook inside the API server's admission chain: failure policy, dry run,
reinvocation, validation of the mutated Pod, and fields newer than the webhook."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.cluster import WEBHOOK_LABEL, WEBHOOK_NAMESPACE, Cluster, Namespace, WebhookProcess
from tests.e2e.helpers import (
    MOUNT_PATH,
    ROLE_ARN,
    VOLUME,
    assert_untouched,
    assert_web_identity,
    by_name,
    comparable,
    container,
    dumps,
    env,
    names,
    pod,
    web_identity_env,
    without_additions,
)
from tests.e2e.kube import ApiError
from tests.e2e.processes import wait_until
from tests.e2e.sidecar import SIDECAR, SIDECAR_LABEL, SidecarInjector
from tests.support.reviews import ROLE
from webhook.certificates.issuing import ca_bundle

pytestmark = pytest.mark.e2e


@pytest.fixture
def stopped_webhook(cluster: Cluster) -> Iterator[WebhookProcess]:
    """A webhook process of its own, registered twice: failurePolicy Ignore and Fail."""
    webhook = cluster.spawn_webhook("stoppable")
    registered = []
    try:
        cluster.wait_ready(webhook)
        for policy in ("Ignore", "Fail"):
            selector = f"stopped-{policy.lower()}"
            document = cluster.webhook_configuration(
                f"pod-identity-webhook-{selector}", webhook, selector, failure_policy=policy
            )
            registered.append(cluster.register(document))
            cluster.wait_mutating(selector, process=webhook)
        yield webhook
    finally:
        for name in registered:
            cluster.unregister(name)
        webhook.stop()


def test_stopped_webhook_and_failure_policy(
    stopped_webhook: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> None:
    ignore, fail = make_namespace(webhook="stopped-ignore"), make_namespace(webhook="stopped-fail")
    for namespace in (ignore, fail):
        namespace.service_account("app", {ROLE_ARN: ROLE})
    assert_web_identity(ignore.run(pod("before")))

    assert stopped_webhook.stop() == 0  # SIGTERM: a graceful exit

    assert_untouched(ignore.run(pod("admitted")))
    with pytest.raises(ApiError) as refused:
        fail.create_pod(pod("refused"))
    assert refused.value.status == 500, refused.value.body
    assert 'failed calling webhook "pod-identity-webhook.amazonaws.com"' in refused.value.message
    assert fail.kube.call("GET", fail.pod_path("refused")).status == 404


def _label(cluster: Cluster, namespace: str, value: str | None) -> None:
    cluster.admin.merge_patch(
        f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {WEBHOOK_LABEL: value}}}
    )


@pytest.fixture
def excluded_namespaces(
    cluster: Cluster, make_namespace: Callable[..., Namespace]
) -> Iterator[list[Namespace]]:
    """kube-system and the webhook's namespace, labelled for the main webhook meanwhile."""
    names = ["kube-system", WEBHOOK_NAMESPACE]
    try:
        for name in names:
            _label(cluster, name, "main")
        # The API server matches namespaceSelectors against its namespace informer. Label one
        # more namespace last and wait until it is served: the earlier labels are seen too.
        probe = make_namespace(webhook=None)
        probe.service_account("app", {ROLE_ARN: ROLE})
        _label(cluster, probe.name, "main")
        wait_until(
            lambda: env(probe.create_pod(pod("probe"), dry_run=True)["spec"]["containers"][0]),
            timeout=10,
            what="the namespace labels to reach the API server's admission",
        )
        yield [Namespace(cluster.admin, name) for name in names]
    finally:
        for name in names:
            _label(cluster, name, None)


def test_manifest_namespace_selector_excludes_system_namespaces(
    excluded_namespaces: list[Namespace], main_webhook: WebhookProcess
) -> None:
    for namespace in excluded_namespaces:
        namespace.service_account("e2e-excluded", {ROLE_ARN: ROLE})
        try:
            stored = namespace.run(pod("e2e-excluded", service_account="e2e-excluded"))
            assert_untouched(stored)
            assert main_webhook.admissions(namespace.name) == []
        finally:
            namespace.kube.delete(namespace.pod_path("e2e-excluded"))
            namespace.kube.delete(
                f"/api/v1/namespaces/{namespace.name}/serviceaccounts/e2e-excluded"
            )


def test_admission_review_v1beta1(
    cluster: Cluster, main_webhook: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> None:
    """A configuration that only accepts v1beta1: the API server sends and expects v1beta1."""
    document = cluster.webhook_configuration(
        "pod-identity-webhook-v1beta1", main_webhook, "main-v1beta1"
    )
    document["webhooks"][0]["admissionReviewVersions"] = ["v1beta1"]
    name = cluster.register(document)
    try:
        cluster.wait_mutating("main-v1beta1", process=main_webhook)
        ns = make_namespace(webhook="main-v1beta1")
        ns.service_account("app", {ROLE_ARN: ROLE})
        assert_web_identity(ns.run(pod("beta")))
    finally:
        cluster.unregister(name)


def test_server_side_dry_run_shows_the_mutation(
    ns: Namespace, main_webhook: WebhookProcess
) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    answer = ns.create_pod(pod("dry"), dry_run=True)
    assert_web_identity(answer)
    assert ns.kube.call("GET", ns.pod_path("dry")).status == 404  # nothing was stored
    (record,) = main_webhook.admissions(ns.name)
    assert (record["pod"], record["outcome"]) == ("dry", "mutated")


@pytest.fixture
def sidecar_injector(cluster: Cluster) -> Iterator[SidecarInjector]:
    injector = SidecarInjector(cluster.webhook_cert)
    try:
        # Configurations run in name order: this one after "pod-identity-webhook".
        name = cluster.register(
            injector.configuration("zz-e2e-sidecar-injector", ca_bundle(cluster.webhook_ca.cert))
        )
        try:
            yield injector
        finally:
            cluster.unregister(name)
    finally:
        injector.close()


def test_reinvocation_gives_a_later_sidecar_the_credentials(
    sidecar_injector: SidecarInjector,
    make_namespace: Callable[..., Namespace],
    main_webhook: WebhookProcess,
) -> None:
    ns = make_namespace(**{SIDECAR_LABEL: "true"})
    ns.service_account("app", {ROLE_ARN: ROLE})
    wait_until(
        lambda: SIDECAR in names(ns.create_pod(pod("probe"), dry_run=True)["spec"]["containers"]),
        timeout=30,
        what="the sidecar injector's configuration to take effect",
    )
    stored = ns.run(pod("reinvoked"))
    assert names(stored["spec"]["containers"]) == ["app", SIDECAR]
    assert_web_identity(stored)  # both containers, each with exactly one set of variables
    assert "reinvoked" in sidecar_injector.calls
    calls = [r for r in main_webhook.admissions(ns.name) if r["pod"] == "reinvoked"]
    assert [r["outcome"] for r in calls] == ["mutated", "mutated"], calls


NEWER_FIELDS_POD: dict[str, Any] = pod(
    "newer",
    os={"name": "linux"},
    schedulingGates=[{"name": "e2e.example.invalid/hold"}],
    resources={"limits": {"cpu": "1", "memory": "256Mi"}},
    hostUsers=False,
    init_containers=[
        container(
            "proxy",
            restartPolicy="Always",
            startupProbe={"grpc": {"port": 15021}},
            lifecycle={"preStop": {"sleep": {"seconds": 5}}},
        )
    ],
    containers=[
        container(
            "app",
            env=[
                {"name": "EXISTING", "value": "1"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            envFrom=[{"configMapRef": {"name": "settings", "optional": True}}],
            resizePolicy=[{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
            resources={"requests": {"cpu": "100m", "memory": "64Mi"}},
            securityContext={"appArmorProfile": {"type": "RuntimeDefault"}},
            volumeMounts=[
                {
                    "name": "data",
                    "mountPath": "/data",
                    "readOnly": True,
                    "recursiveReadOnly": "IfPossible",
                }
            ],
        )
    ],
    volumes=[{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
)


def test_pods_with_newer_fields_keep_them(
    ns: Namespace, make_namespace: Callable[..., Namespace]
) -> None:
    """The same manifest stored with and without the webhook differs by our additions only."""
    control = make_namespace(webhook=None)
    control.service_account("app")
    ns.service_account("app", {ROLE_ARN: ROLE})
    without = control.run(NEWER_FIELDS_POD)
    mutated = ns.run(NEWER_FIELDS_POD)
    assert_web_identity(mutated, env_before=())
    app = by_name(mutated["spec"]["containers"], "app")
    assert env(app) == [("EXISTING", "1"), ("POD_NAME", None), *web_identity_env()]
    assert comparable(without_additions(mutated)) == comparable(without), dumps(mutated)
    # The comparison is not vacuous: the API server kept these newer fields.
    proxy = by_name(without["spec"]["initContainers"], "proxy")
    assert proxy["restartPolicy"] == "Always"
    assert proxy["startupProbe"]["grpc"]["port"] == 15021
    assert proxy["lifecycle"]["preStop"]["sleep"] == {"seconds": 5}
    assert by_name(without["spec"]["containers"], "app")["resizePolicy"]


def test_stored_pod_passes_the_api_server_validation(
    ns: Namespace, make_namespace: Callable[..., Namespace]
) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE, "eks.amazonaws.com/sts-regional-endpoints": "true"})
    manifest = pod(
        "valid",
        init_containers=[container("init"), container("proxy", restartPolicy="Always")],
        containers=[container("app"), container("worker")],
    )
    created = ns.kube.request("POST", f"/api/v1/namespaces/{ns.name}/pods", manifest)
    assert created.warnings == [], created.warnings  # e.g. no duplicate env names
    stored = ns.stored_pod("valid")
    assert_web_identity(stored, env_before=[("AWS_STS_REGIONAL_ENDPOINTS", "regional")])

    # The stored Pod, as a new object, passes strict validation (no unknown or duplicate fields).
    control = make_namespace(webhook=None)
    control.service_account("app")
    again = copy.deepcopy(stored)
    again["metadata"] = {"name": "valid", "namespace": control.name}
    again.pop("status", None)
    answer = control.kube.request(
        "POST",
        f"/api/v1/namespaces/{control.name}/pods",
        again,
        query={"dryRun": "All", "fieldValidation": "Strict"},
    )
    assert answer.warnings == []
    # And an update of the stored Pod passes update validation.
    patched = ns.kube.merge_patch(
        ns.pod_path("valid"), {"metadata": {"labels": {"checked": "yes"}}}
    )
    assert patched["spec"] == stored["spec"]


def test_an_already_mutated_pod_is_stored_as_submitted(
    ns: Namespace, main_webhook: WebhookProcess
) -> None:
    """A stored Pod submitted again (an exported manifest): nothing is added twice."""
    ns.service_account("app", {ROLE_ARN: ROLE})
    first = ns.run(pod("first", init_containers=[container("init")]))
    again = copy.deepcopy(first)
    again["metadata"] = {"name": "again"}
    again.pop("status")
    second = ns.run(again)
    assert comparable(second)["spec"] == comparable(first)["spec"]
    records = main_webhook.admissions(ns.name)
    assert [(r["pod"], r["outcome"]) for r in records] == [
        ("first", "mutated"),
        ("again", "not_mutated"),
    ]


def test_conflicting_mount_path_is_refused_by_validation(ns: Namespace) -> None:
    """Conflicts are detected by name only (upstream 7.4): a different volume already at the
    token path gets a second mount there, and the API server's validation refuses the Pod."""
    ns.service_account("app", {ROLE_ARN: ROLE})
    manifest = pod(
        "conflict",
        containers=[container("app", volumeMounts=[{"name": "mine", "mountPath": MOUNT_PATH}])],
        volumes=[{"name": "mine", "emptyDir": {}}],
    )
    with pytest.raises(ApiError) as refused:
        ns.create_pod(manifest)
    assert refused.value.status == 422, refused.value.body
    assert "must be unique" in refused.value.message
    # The same name is recognised as already present: nothing is added, the Pod is stored.
    same_name = pod(
        "same-name",
        containers=[container("app", volumeMounts=[{"name": VOLUME, "mountPath": "/mine"}])],
        volumes=[{"name": VOLUME, "emptyDir": {}}],
    )
    stored = ns.run(same_name)
    assert by_name(stored["spec"]["volumes"], VOLUME) == {"name": VOLUME, "emptyDir": {}}
    assert env(stored["spec"]["containers"][0]) == web_identity_env()


@pytest.fixture
def strict_namespace(
    cluster: Cluster, main_webhook: WebhookProcess, make_namespace: Callable[..., Namespace]
) -> Iterator[Namespace]:
    """A namespace served by the main webhook under failurePolicy: Fail, so any HTTP error of
    ours would surface as `failed calling webhook` instead of being ignored."""
    document = cluster.webhook_configuration(
        "pod-identity-webhook-strict", main_webhook, "strict", failure_policy="Fail"
    )
    name = cluster.register(document)
    try:
        cluster.wait_mutating("strict", process=main_webhook)
        namespace = make_namespace(webhook="strict")
        namespace.service_account("app", {ROLE_ARN: ROLE})
        yield namespace
    finally:
        cluster.unregister(name)


def _with(field: str, value: Any) -> dict[str, Any]:
    body = pod("nulls")
    if field == "spec":
        body["spec"] = value
        return body
    if field == "no-spec":
        del body["spec"]
        return body
    if field in ("containers", "initContainers", "volumes"):
        body["spec"][field] = value
        return body
    body["spec"]["containers"][0][field] = value
    return body


def test_the_api_server_never_sends_null_items_to_webhooks(
    strict_namespace: Namespace, main_webhook: WebhookProcess
) -> None:
    """`null` where the Pod has an object (or no spec) is decoded into Go types before
    admission: webhooks see empty objects, so our HTTP 400 for nulls can only meet hand-made
    reviews. Each Pod is then refused by validation, never by a failed webhook call."""
    fields = ["spec", "no-spec", "containers", "initContainers", "volumes", "env", "volumeMounts"]
    for count, field in enumerate(fields, start=1):
        value = None if field in ("spec", "no-spec") else [None]
        with pytest.raises(ApiError) as refused:
            strict_namespace.create_pod(_with(field, value), dry_run=True)
        assert refused.value.status == 422, (field, refused.value.body)
        assert "failed calling webhook" not in refused.value.message, field

        # The webhook was asked and answered (one log line per admission), not bypassed.
        def answered(count: int = count) -> bool:
            return len(main_webhook.admissions(strict_namespace.name)) >= count

        wait_until(answered, timeout=10, what=f"the admission of the Pod with a null {field}")
