"""Pod builders and what the webhook is expected to add (upstream-behaviour sections 6 and 7)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tests.support.reviews import PREFIX, ROLE

ROLE_ARN = f"{PREFIX}/role-arn"
AUDIENCE = f"{PREFIX}/audience"
STS_REGIONAL = f"{PREFIX}/sts-regional-endpoints"
TOKEN_EXPIRATION = f"{PREFIX}/token-expiration"
SKIP_CONTAINERS = f"{PREFIX}/skip-containers"
SKIP_LABEL = f"{PREFIX}/skip-pod-identity-webhook"
POD_IDENTITY_LABEL = f"{PREFIX}/pod-identity"

VOLUME = "aws-iam-token"
MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = f"{MOUNT_PATH}/token"
WINDOWS_TOKEN_FILE = "C:\\var\\run\\secrets\\eks.amazonaws.com\\serviceaccount\\token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"

CC_VOLUME = "eks-pod-identity-token"
CC_MOUNT_PATH = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
CC_TOKEN_FILE = f"{CC_MOUNT_PATH}/eks-pod-identity-token"
CC_AUDIENCE = "pods.eks.amazonaws.com"
CC_FULL_URI = "http://169.254.170.23/v1/credentials"

WEB_IDENTITY_VARS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
ADDED_VARS = (
    *WEB_IDENTITY_VARS,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)

IMAGE = "registry.invalid/app:1"


def container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, **fields}


def pod(
    name: str,
    *,
    service_account: str | None = "app",
    containers: Iterable[Mapping[str, Any]] | None = None,
    init_containers: Iterable[Mapping[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    body: dict[str, Any] = {
        "containers": [dict(c) for c in containers] if containers else [container("app")],
        **spec,
    }
    if service_account is not None:
        body["serviceAccountName"] = service_account
    if init_containers:
        body["initContainers"] = [dict(c) for c in init_containers]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def by_name(items: Iterable[Mapping[str, Any]] | None, name: str) -> dict[str, Any]:
    for item in items or ():
        if item.get("name") == name:
            return dict(item)
    raise AssertionError(f"no item named {name!r} in {[i.get('name') for i in items or ()]}")


def names(items: Iterable[Mapping[str, Any]] | None) -> list[str]:
    return [item["name"] for item in items or ()]


def containers_of(stored: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = stored["spec"]
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def env(item: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(name, value) of every env entry, in order."""
    return [(e["name"], e.get("value")) for e in item.get("env") or []]


def web_identity_env(role: str = ROLE, token_file: str = TOKEN_FILE) -> list[tuple[str, str]]:
    return [("AWS_ROLE_ARN", role), ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file)]


def token_volume(
    *,
    audience: str = DEFAULT_AUDIENCE,
    expiration: int = 86400,
    name: str = VOLUME,
    path: str = "token",
) -> dict[str, Any]:
    """The projected volume as the API server stores it (it defaults defaultMode)."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": audience,
                        "expirationSeconds": expiration,
                        "path": path,
                    }
                }
            ],
            "defaultMode": 420,
        },
    }


def token_mount(name: str = VOLUME, path: str = MOUNT_PATH) -> dict[str, Any]:
    return {"name": name, "readOnly": True, "mountPath": path}


def token_source(stored: Mapping[str, Any], volume: str = VOLUME) -> dict[str, Any]:
    source: dict[str, Any] = by_name(stored["spec"].get("volumes"), volume)["projected"]["sources"][
        0
    ]["serviceAccountToken"]
    return source


def assert_web_identity(
    stored: Mapping[str, Any],
    *,
    role: str = ROLE,
    audience: str = DEFAULT_AUDIENCE,
    expiration: int = 86400,
    env_before: Iterable[tuple[str, str]] = (),
    token_file: str = TOKEN_FILE,
    containers: Iterable[str] | None = None,
) -> None:
    """Volume first; each named container (default: all) ends with the env and the mount."""
    volumes = stored["spec"]["volumes"]
    assert volumes[0] == token_volume(audience=audience, expiration=expiration), dumps(volumes)
    wanted = set(containers) if containers is not None else None
    for item in containers_of(stored):
        if wanted is not None and item["name"] not in wanted:
            continue
        aws = [entry for entry in env(item) if entry[0] in ADDED_VARS]
        assert aws == [*env_before, *web_identity_env(role, token_file)], dumps(item)
        assert item["volumeMounts"][-1] == token_mount(), dumps(item)
    assert POD_IDENTITY_LABEL not in (stored["metadata"].get("labels") or {})


def assert_untouched(stored: Mapping[str, Any], *, containers: Iterable[str] | None = None) -> None:
    """No token volume (unless `containers` narrows the check), no AWS env, no token mount."""
    wanted = set(containers) if containers is not None else None
    if wanted is None:
        assert VOLUME not in names(stored["spec"].get("volumes")), dumps(stored["spec"])
        assert CC_VOLUME not in names(stored["spec"].get("volumes")), dumps(stored["spec"])
        assert POD_IDENTITY_LABEL not in (stored["metadata"].get("labels") or {})
    for item in containers_of(stored):
        if wanted is not None and item["name"] not in wanted:
            continue
        assert not [e for e in env(item) if e[0] in ADDED_VARS], dumps(item)
        assert not {VOLUME, CC_VOLUME} & set(names(item.get("volumeMounts"))), dumps(item)


_KUBE_API_ACCESS = re.compile(r"kube-api-access-[a-z0-9]{5}")


def comparable(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored Pod without what differs between two creations of the same manifest."""
    result: dict[str, Any] = json.loads(_KUBE_API_ACCESS.sub("kube-api-access", json.dumps(stored)))
    for key in ("namespace", "uid", "resourceVersion", "creationTimestamp", "managedFields"):
        result["metadata"].pop(key, None)
    for condition in (result.get("status") or {}).get("conditions") or []:
        condition.pop("lastTransitionTime", None)
    return result


def without_additions(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored Pod minus what the web-identity mutation adds (the volume, env, mounts)."""
    result = copy.deepcopy(dict(stored))
    spec = result["spec"]
    spec["volumes"] = [v for v in spec.get("volumes") or [] if v["name"] != VOLUME]
    for item in containers_of(result):
        kept = [e for e in item.get("env") or [] if e["name"] not in WEB_IDENTITY_VARS]
        if kept:
            item["env"] = kept
        else:
            item.pop("env", None)
        mounts = [m for m in item.get("volumeMounts") or [] if m["name"] != VOLUME]
        if mounts:
            item["volumeMounts"] = mounts
        else:
            item.pop("volumeMounts", None)
    if not spec["volumes"]:
        del spec["volumes"]
    return result


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
