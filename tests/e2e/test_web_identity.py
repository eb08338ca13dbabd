"""Web-identity (IRSA) mode as the API server stores it (upstream-behaviour sections 3 and 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.cluster import Namespace, WebhookProcess
from tests.e2e.helpers import (
    AUDIENCE,
    MOUNT_PATH,
    ROLE_ARN,
    SKIP_CONTAINERS,
    SKIP_LABEL,
    STS_REGIONAL,
    TOKEN_EXPIRATION,
    VOLUME,
    WINDOWS_TOKEN_FILE,
    assert_untouched,
    assert_web_identity,
    by_name,
    container,
    dumps,
    env,
    names,
    pod,
    token_mount,
    token_volume,
    web_identity_env,
)
from tests.e2e.processes import wait_until
from tests.support.reviews import OTHER_ROLE, ROLE

pytestmark = pytest.mark.e2e


def test_annotated_service_account_gets_volume_mount_and_env(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(pod("web"))
    spec = stored["spec"]
    # Our volume is prepended to the one the ServiceAccount admission plugin added before us.
    assert spec["volumes"][0] == token_volume(), dumps(spec["volumes"])
    assert len(spec["volumes"]) == 2
    assert spec["volumes"][1]["name"].startswith("kube-api-access-")
    (app,) = spec["containers"]
    assert env(app) == web_identity_env()
    assert app["volumeMounts"] == [
        {
            "name": spec["volumes"][1]["name"],
            "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        },
        token_mount(),
    ]


def test_unannotated_service_account_is_untouched(
    ns: Namespace, main_webhook: WebhookProcess
) -> None:
    ns.service_account("app")
    stored = ns.run(pod("plain"))
    assert_untouched(stored)
    assert "env" not in stored["spec"]["containers"][0]
    # It was the webhook that said no, not a selector that kept the Pod away from it.
    (record,) = main_webhook.admissions(ns.name)
    assert (record["pod"], record["outcome"], record["reason"]) == (
        "plain",
        "not_mutated",
        "no-role",
    )


def test_default_service_account(ns: Namespace) -> None:
    """No serviceAccountName: the admission plugin sets `default` before our webhook runs."""
    ns.kube.merge_patch(
        f"/api/v1/namespaces/{ns.name}/serviceaccounts/default",
        {"metadata": {"annotations": {ROLE_ARN: ROLE}}},
    )
    manifest = pod("default-sa", service_account=None)

    def mutated() -> dict[str, Any] | None:
        answer = ns.create_pod(manifest, dry_run=True)
        return answer if VOLUME in names(answer["spec"]["volumes"]) else None

    answer = wait_until(
        mutated, timeout=10, what="the default ServiceAccount's annotation to reach the webhook"
    )
    assert answer["spec"]["serviceAccountName"] == "default"
    assert_web_identity(ns.run(pod("default-sa", service_account=None)))


def test_audience_annotation(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE, AUDIENCE: "e2e.example.invalid"})
    assert_web_identity(ns.run(pod("audience")), audience="e2e.example.invalid")


def test_sts_regional_endpoints_annotation(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE, STS_REGIONAL: "true"})
    ns.service_account("global", {ROLE_ARN: ROLE, STS_REGIONAL: "false"})
    assert_web_identity(
        ns.run(pod("regional")), env_before=[("AWS_STS_REGIONAL_ENDPOINTS", "regional")]
    )
    assert_web_identity(ns.run(pod("global", service_account="global")))


def test_token_expiration_from_service_account_and_pod(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE, TOKEN_EXPIRATION: "3600"})
    ns.service_account("short", {ROLE_ARN: ROLE, TOKEN_EXPIRATION: "100"})
    assert_web_identity(ns.run(pod("from-sa")), expiration=3600)
    assert_web_identity(
        ns.run(pod("from-pod", annotations={TOKEN_EXPIRATION: "7200"})), expiration=7200
    )
    assert_web_identity(ns.run(pod("clamped", service_account="short")), expiration=600)
    assert_web_identity(
        ns.run(pod("pod-clamped", annotations={TOKEN_EXPIRATION: "0"})), expiration=600
    )
    # An invalid Pod annotation keeps the ServiceAccount's value.
    assert_web_identity(
        ns.run(pod("pod-invalid", annotations={TOKEN_EXPIRATION: "1h"})), expiration=3600
    )


def test_region_flag(make_namespace: Callable[..., Namespace]) -> None:
    """The `flags` webhook runs with --aws-default-region=eu-west-2."""
    ns = make_namespace(webhook="flags")
    ns.service_account("app", {ROLE_ARN: ROLE})
    region = [("AWS_DEFAULT_REGION", "eu-west-2"), ("AWS_REGION", "eu-west-2")]
    assert_web_identity(ns.run(pod("region")), env_before=region)
    # A container that sets its own region keeps it and gets no second one.
    own = container("app", env=[{"name": "AWS_REGION", "value": "us-east-1"}])
    stored = ns.run(pod("own-region", containers=[own]))
    assert env(stored["spec"]["containers"][0]) == [
        ("AWS_REGION", "us-east-1"),
        *web_identity_env(),
    ]


def test_skip_containers(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(
        pod(
            "skip",
            annotations={SKIP_CONTAINERS: "sidecar,init-skip"},
            init_containers=[container("init-skip"), container("init-run")],
            containers=[container("app"), container("sidecar")],
        )
    )
    assert_web_identity(stored, containers=["app", "init-run"])
    assert_untouched(stored, containers=["sidecar", "init-skip"])


def test_init_containers_and_native_sidecars(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(
        pod(
            "sidecars",
            init_containers=[
                container("init"),
                container("proxy", restartPolicy="Always"),
            ],
        )
    )
    assert_web_identity(stored)
    assert names(stored["spec"]["initContainers"]) == ["init", "proxy"]
    assert by_name(stored["spec"]["initContainers"], "proxy")["restartPolicy"] == "Always"


@pytest.mark.parametrize("selector", ["kubernetes.io/os", "beta.kubernetes.io/os"])
def test_windows_node_selector(ns: Namespace, selector: str) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(pod("windows", nodeSelector={selector: "windows"}))
    assert_web_identity(stored, token_file=WINDOWS_TOKEN_FILE)
    # Only the env value is a Windows path; the mount keeps the Unix one.
    assert stored["spec"]["containers"][0]["volumeMounts"][-1]["mountPath"] == MOUNT_PATH


def test_service_account_created_just_before_the_pod(ns: Namespace) -> None:
    """The race of upstream issues #174/#194: the Pod arrives before the watch event."""
    for attempt in range(5):
        name = f"new-{attempt}"
        ns.service_account(name, {ROLE_ARN: f"{ROLE}-{attempt}"})
        stored = ns.run(pod(f"race-{attempt}", service_account=name))
        assert_web_identity(stored, role=f"{ROLE}-{attempt}")


def test_changed_annotation_is_used_for_the_next_pod(ns: Namespace) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    assert_web_identity(ns.run(pod("before")))
    ns.kube.merge_patch(
        f"/api/v1/namespaces/{ns.name}/serviceaccounts/app",
        {"metadata": {"annotations": {ROLE_ARN: OTHER_ROLE}}},
    )

    def new_role() -> bool:
        answer = ns.create_pod(pod("probe"), dry_run=True)
        return ("AWS_ROLE_ARN", OTHER_ROLE) in env(answer["spec"]["containers"][0])

    # The webhook learns of the change through its watch; allow it a moment, not a resync.
    wait_until(new_role, timeout=10, what="the new role-arn to reach the webhook")
    assert_web_identity(ns.run(pod("after")), role=OTHER_ROLE)
    # Removing the annotation stops the injection.
    ns.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns.name}/serviceaccounts/app",
        [{"op": "remove", "path": "/metadata/annotations/eks.amazonaws.com~1role-arn"}],
        content_type="application/json-patch+json",
    )
    wait_until(
        lambda: "env" not in ns.create_pod(pod("probe"), dry_run=True)["spec"]["containers"][0],
        timeout=10,
        what="the removed role-arn to reach the webhook",
    )
    assert_untouched(ns.run(pod("removed")))


def test_skip_label_keeps_the_pod_away_from_the_webhook(
    ns: Namespace, main_webhook: WebhookProcess
) -> None:
    """The manifest's objectSelector: the API server does not even call the webhook."""
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(pod("skipped", labels={SKIP_LABEL: "true"}))
    assert_untouched(stored)
    assert main_webhook.admissions(ns.name) == []


def test_generate_name_pod(ns: Namespace, main_webhook: WebhookProcess) -> None:
    ns.service_account("app", {ROLE_ARN: ROLE})
    manifest = pod("unused")
    manifest["metadata"] = {"generateName": "generated-"}
    stored = ns.run(manifest)
    assert stored["metadata"]["name"].startswith("generated-")
    assert_web_identity(stored)
    (record,) = main_webhook.admissions(ns.name)
    assert record["outcome"] == "mutated"


def test_pod_without_volumes(ns: Namespace) -> None:
    """No token automount: the Pod has no volumes, so the patch adds the whole list."""
    ns.service_account("app", {ROLE_ARN: ROLE})
    stored = ns.run(pod("no-volumes", automountServiceAccountToken=False))
    assert stored["spec"]["volumes"] == [token_volume()]
    assert stored["spec"]["containers"][0]["volumeMounts"] == [token_mount()]
    assert_web_identity(stored)
