"""Container-credentials (EKS Pod Identity) mode and ConfigMap mode (spec sections 5 and 6)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import WEBHOOK_NAMESPACE, Cluster, Namespace
from tests.e2e.helpers import (
    CC_AUDIENCE,
    CC_FULL_URI,
    CC_MOUNT_PATH,
    CC_TOKEN_FILE,
    CC_VOLUME,
    POD_IDENTITY_LABEL,
    ROLE_ARN,
    TOKEN_EXPIRATION,
    VOLUME,
    assert_untouched,
    assert_web_identity,
    dumps,
    env,
    names,
    pod,
    token_mount,
    token_source,
)
from tests.e2e.processes import wait_until
from tests.support.reviews import ROLE, role_arn

pytestmark = pytest.mark.e2e

REGION = [("AWS_DEFAULT_REGION", "eu-west-2"), ("AWS_REGION", "eu-west-2")]
CONFIG_MAP_PATH = f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/configmaps/pod-identity-webhook"
FLAG_AUDIENCE = "e2e-flag-audience"  # the configmap webhook's --token-audience
CM_ROLE = role_arn("e2e-cm-app")
SHARED_ROLE = role_arn("e2e-cm-shared")
IGNORED_ROLE = role_arn("e2e-cm-ignored")


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


@pytest.fixture
def identities(cluster: Cluster) -> Iterator[Callable[[list[tuple[str, str]]], None]]:
    """Rewrites the `flags` webhook's container-credentials file; emptied afterwards."""
    assert cluster.cc_file is not None
    path = cluster.cc_file

    def write(pairs: list[tuple[str, str]]) -> None:
        document = {"identities": [{"namespace": n, "serviceAccount": s} for n, s in pairs]}
        _write_atomically(path, json.dumps(document))

    yield write
    write([])


def test_container_credentials_mode(
    make_namespace: Callable[..., Namespace],
    identities: Callable[[list[tuple[str, str]]], None],
) -> None:
    ns = make_namespace(webhook="flags")
    # A role-arn annotation does not matter once the pair is a container-credentials identity.
    ns.service_account("pod-identity", {ROLE_ARN: ROLE})
    ns.service_account("irsa", {ROLE_ARN: ROLE})
    identities([(ns.name, "pod-identity")])
    probe = pod("probe", service_account="pod-identity")
    wait_until(
        lambda: (
            POD_IDENTITY_LABEL
            in (ns.create_pod(probe, dry_run=True)["metadata"].get("labels") or {})
        ),
        timeout=15,
        what="the container-credentials file to be reloaded",
    )

    stored = ns.run(pod("cc", service_account="pod-identity", labels={"app": "cc"}))
    assert stored["metadata"]["labels"] == {"app": "cc", POD_IDENTITY_LABEL: "enabled"}
    volume = stored["spec"]["volumes"][0]
    assert volume["name"] == CC_VOLUME, dumps(stored["spec"]["volumes"])
    source = token_source(stored, CC_VOLUME)
    assert source["audience"] == CC_AUDIENCE
    assert source["path"] == "eks-pod-identity-token"
    assert 79200 <= source["expirationSeconds"] <= 86400  # the default 86400, jittered
    (app,) = stored["spec"]["containers"]
    assert env(app) == [
        *REGION,
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", CC_FULL_URI),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", CC_TOKEN_FILE),
    ]
    assert app["volumeMounts"][-1] == token_mount(CC_VOLUME, CC_MOUNT_PATH)
    assert VOLUME not in names(stored["spec"]["volumes"])

    # A Pod annotation sets the expiration exactly: jitter applies to 86400 only.
    annotated = ns.run(
        pod("cc-3600", service_account="pod-identity", annotations={TOKEN_EXPIRATION: "3600"})
    )
    assert token_source(annotated, CC_VOLUME)["expirationSeconds"] == 3600
    assert annotated["metadata"]["labels"] == {POD_IDENTITY_LABEL: "enabled"}

    # Another ServiceAccount of the namespace stays in web-identity mode.
    assert_web_identity(ns.run(pod("irsa", service_account="irsa")), env_before=REGION)

    # Removing the identity switches the ServiceAccount back to web identity.
    identities([])
    wait_until(
        lambda: (
            POD_IDENTITY_LABEL
            not in (ns.create_pod(probe, dry_run=True)["metadata"].get("labels") or {})
        ),
        timeout=15,
        what="the emptied container-credentials file to be reloaded",
    )
    assert_web_identity(ns.run(pod("back", service_account="pod-identity")), env_before=REGION)


@pytest.fixture
def config_map(cluster: Cluster) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Creates or replaces the pod-identity-webhook ConfigMap; deleted afterwards."""

    def put(entries: dict[str, Any]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pod-identity-webhook", "namespace": WEBHOOK_NAMESPACE},
            "data": {"config": json.dumps(entries)},
        }
        if cluster.admin.call("GET", CONFIG_MAP_PATH).status == 404:
            cluster.admin.create(body)
        else:
            cluster.admin.request("PUT", CONFIG_MAP_PATH, body)

    yield put
    cluster.admin.delete(CONFIG_MAP_PATH)


def test_config_map_mode(
    make_namespace: Callable[..., Namespace],
    config_map: Callable[[dict[str, Any]], None],
    cluster: Cluster,
) -> None:
    first, second = make_namespace(webhook="configmap"), make_namespace(webhook="configmap")
    for name in ("cm-app", "cm-shared", "cm-none"):
        first.service_account(name)
    first.service_account("cm-annotated", {ROLE_ARN: ROLE})
    second.service_account("cm-shared")
    second.service_account("cm-app")
    config_map(
        {
            f"{first.name}/cm-app": {
                "RoleARN": CM_ROLE,
                "Audience": "cm-audience",
                "UseRegionalSTS": True,
                "TokenExpiration": 3600,
            },
            "*/cm-shared": {"RoleARN": SHARED_ROLE},
            f"{first.name}/cm-annotated": {"RoleARN": IGNORED_ROLE},
        }
    )
    probe = pod("probe", service_account="cm-app")
    wait_until(
        lambda: VOLUME in names(first.create_pod(probe, dry_run=True)["spec"]["volumes"]),
        timeout=15,
        what="the ConfigMap to reach the webhook",
    )

    # Every value of an exact entry comes from the entry.
    assert_web_identity(
        first.run(pod("app", service_account="cm-app")),
        role=CM_ROLE,
        audience="cm-audience",
        expiration=3600,
        env_before=[("AWS_STS_REGIONAL_ENDPOINTS", "regional")],
    )
    # `*` matches every namespace; a missing Audience falls back to --token-audience (2d).
    for namespace in (first, second):
        assert_web_identity(
            namespace.run(pod("shared", service_account="cm-shared")),
            role=SHARED_ROLE,
            audience=FLAG_AUDIENCE,
        )
    # The exact entry is for the first namespace only.
    assert_untouched(second.run(pod("app", service_account="cm-app")))
    # A ServiceAccount's own role-arn wins over the ConfigMap.
    assert_web_identity(
        first.run(pod("annotated", service_account="cm-annotated")), audience=FLAG_AUDIENCE
    )
    assert_untouched(first.run(pod("none", service_account="cm-none")))

    # Deleting the ConfigMap removes its entries (deviation 2d; upstream kept them).
    cluster.admin.delete(CONFIG_MAP_PATH)
    wait_until(
        lambda: VOLUME not in names(first.create_pod(probe, dry_run=True)["spec"]["volumes"]),
        timeout=15,
        what="the ConfigMap deletion to reach the webhook",
    )
    assert_untouched(second.run(pod("shared-after", service_account="cm-shared")))


def test_config_map_expiration_below_ten_minutes_does_not_get_pods_rejected(
    make_namespace: Callable[..., Namespace],
    config_map: Callable[[dict[str, Any]], None],
) -> None:
    # Upstream injects 300 as is and the API server refuses the Pod (422); we raise it to 600.
    ns = make_namespace(webhook="configmap")
    ns.service_account("short")
    config_map({f"{ns.name}/short": {"RoleARN": CM_ROLE, "TokenExpiration": 300}})
    probe = pod("probe", service_account="short")
    wait_until(
        lambda: VOLUME in names(ns.create_pod(probe, dry_run=True)["spec"]["volumes"]),
        timeout=15,
        what="the ConfigMap to reach the webhook",
    )
    assert_web_identity(
        ns.run(pod("short", service_account="short")),
        role=CM_ROLE,
        audience=FLAG_AUDIENCE,
        expiration=600,
    )
