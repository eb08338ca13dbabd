"""Pure. The additive JSON patch that gives a Pod its credentials (docs/compatibility.md, 2a).

Only `add` operations for what is missing: variables go to the end of `env`, the mount to the
end of `volumeMounts`, the volume to the front of `volumes` (where upstream puts it). Nothing
that exists is removed, reordered or rewritten, so fields newer than this code survive, and a
Pod that already has everything gets no operation at all.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.admission.endpoints import (
    CA_BUNDLE_FILE,
    CA_BUNDLE_MOUNT_PATH,
    CA_BUNDLE_VOLUME,
    Endpoints,
    ca_mount,
    ca_volume,
    endpoint_variables,
)
from webhook.admission.entries import INCLUDE_CONTAINERS, SKIP_CONTAINERS, parse_skip_containers
from webhook.admission.notes import Note
from webhook.admission.wire import EnvVar, Method, PatchOp, VolumeMount
from webhook.errors import InvalidPod
from webhook.gocompat import go_path_join

__all__ = [
    "CONTAINER_CREDENTIALS_VARS",
    "POD_IDENTITY_LABEL",
    "REGION_VARS",
    "ROLE_ARN_VARS",
    "SESSION_NAME_VAR",
    "STS_VAR",
    "Plan",
    "escape_pointer",
    "mapping",
    "patch_for",
    "string_map",
]

POD_IDENTITY_LABEL = "eks.amazonaws.com/pod-identity"  # literal, whatever the prefix
ROLE_ARN_VARS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
CONTAINER_CREDENTIALS_VARS = (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
REGION_VARS = ("AWS_DEFAULT_REGION", "AWS_REGION")
STS_VAR = "AWS_STS_REGIONAL_ENDPOINTS"
SESSION_NAME_VAR = "AWS_ROLE_SESSION_NAME"
WINDOWS_SELECTORS = ("kubernetes.io/os", "beta.kubernetes.io/os")
CA_BUNDLE_FILE_PATH = go_path_join(CA_BUNDLE_MOUNT_PATH, CA_BUNDLE_FILE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one credential method injects into every container that takes it."""

    method: Method
    volume_name: str
    mount_path: str
    token_path: str
    audience: str
    expiration: int
    regional_sts: bool
    endpoints: Endpoints | None = None
    """Ours: a local STS and a CA bundle that ride along with the credentials."""
    credentials: tuple[tuple[str, str | None], ...]
    """The credential pair, in order; None stands for the token file's path."""
    region: str
    container_roles: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Ours: container name → its own role, replacing the first credential's value."""
    session_name: EnvVar | None = None
    """Ours: AWS_ROLE_SESSION_NAME, added with the credentials (never on its own)."""
    credential_keys: tuple[str, ...] = dataclasses.field(init=False)
    """The credentials' names, read for every container (a plan is shared by many Pods)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "credential_keys", tuple(name for name, _ in self.credentials))


def escape_pointer(token: str) -> str:
    """RFC 6901 reference token escaping."""
    return token.replace("~", "~0").replace("/", "~1")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPod(f"{where} must be an object")
    return value


def string_map(value: Any, where: str) -> Mapping[str, str]:
    found = mapping(value, where)
    for key, item in found.items():
        if item is not None and not isinstance(item, str):
            raise InvalidPod(f"{where}[{key!r}] must be a string")
    return found


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPod(f"{where} must be a list")
    return value


def _name(item: Any, where: str) -> str:
    if not isinstance(item, dict):
        raise InvalidPod(f"{where} must be an object")
    name = item.get("name")
    if name is None:
        return ""
    if not isinstance(name, str):
        raise InvalidPod(f"{where}.name must be a string")
    return name


def _names(items: list[Any], *where: str) -> set[str]:
    """The names of a list of objects; `where` (its parts joined) is only formatted for a bad
    item: this runs for every env variable and mount of every admission."""
    names = set()
    for index, item in enumerate(items):
        name = item.get("name") if type(item) is dict else 0
        if type(name) is str:
            names.add(name)
        elif name is None:
            names.add("")
        else:
            names.add(_name(item, f"{''.join(where)}[{index}]"))  # raises InvalidPod
    return names


def _part_names(container: Mapping[str, Any], field: str, index: int, part: str) -> set[str]:
    """The names in a container's `env` or `volumeMounts`; where it is, is spelled out only
    for an error."""
    items = container.get(part)
    if items is None:
        return set()
    if not isinstance(items, list):
        raise InvalidPod(f"spec.{field}[{index}].{part} must be a list")
    return _names(items, "spec.", field, f"[{index}].", part)


def _is_windows(spec: Mapping[str, Any]) -> bool:
    if spec.get("nodeSelector") is None and spec.get("os") is None:
        return False  # most Pods
    selectors = string_map(spec.get("nodeSelector"), "spec.nodeSelector")
    if any(selectors.get(key) == "windows" for key in WINDOWS_SELECTORS):
        return True
    # Ours: spec.os.name pins the Pod to Windows nodes even without a node selector.
    os_field = spec.get("os")
    return isinstance(os_field, dict) and os_field.get("name") == "windows"


@functools.lru_cache(maxsize=64)
def _joined(directory: str, name: str) -> str:
    return go_path_join(directory, name)


def _token_file(spec: Mapping[str, Any], plan: Plan) -> str:
    return _pod_path(spec, _joined(plan.mount_path, plan.token_path))


def _pod_path(spec: Mapping[str, Any], path: str) -> str:
    if _is_windows(spec):
        # Only the env value changes; the mountPath stays Unix-style (upstream).
        return "C:" + path.replace("/", "\\")
    return path


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any], str]]:
    # Init containers are treated like containers; ephemeral ones are never touched (upstream).
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec.get(field), f"spec.{field}")):
            yield field, index, container, _name(container, f"spec.{field}[{index}]")


def _label_ops(pod: Mapping[str, Any], metadata: Mapping[str, Any]) -> list[PatchOp]:
    """Upstream labels container-credentials Pods; an `add` on an existing key replaces it."""
    labels = string_map(metadata.get("labels"), "metadata.labels")
    if pod.get("metadata") is None:
        return [
            {"op": "add", "path": "/metadata", "value": {"labels": {POD_IDENTITY_LABEL: "enabled"}}}
        ]
    if metadata.get("labels") is None:
        return [{"op": "add", "path": "/metadata/labels", "value": {POD_IDENTITY_LABEL: "enabled"}}]
    if labels.get(POD_IDENTITY_LABEL) != "enabled":
        path = "/metadata/labels/" + escape_pointer(POD_IDENTITY_LABEL)
        return [{"op": "add", "path": path, "value": "enabled"}]
    return []


def _volume_ops(spec: Mapping[str, Any], plan: Plan) -> list[PatchOp]:
    volumes = _list(spec.get("volumes"), "spec.volumes")
    if plan.volume_name in _names(volumes, "spec.volumes"):
        return []  # conflicts are found by name only (upstream)
    projection: dict[str, Any] = {"expirationSeconds": plan.expiration, "path": plan.token_path}
    if plan.audience:
        projection = {"audience": plan.audience, **projection}
    volume = {
        "name": plan.volume_name,
        "projected": {"sources": [{"serviceAccountToken": projection}]},
    }
    if spec.get("volumes") is None:
        return [{"op": "add", "path": "/spec/volumes", "value": [volume]}]
    return [{"op": "add", "path": "/spec/volumes/0", "value": volume}]


def _container_names(
    annotations: Mapping[str, str], prefix: str, suffix: str, notes: list[Note]
) -> frozenset[str] | None:
    """Names from a CSV container-list annotation; None when it is absent.

    An unparsable skip list skips nothing (upstream); an unparsable include list includes
    nothing, so a typo never hands credentials to containers that were meant to go without.
    """
    text = annotations.get(f"{prefix}/{suffix}")
    if text is None:
        return None
    parsed = parse_skip_containers(text)
    if parsed is not None:
        return parsed
    outcome = "no container skipped" if suffix == SKIP_CONTAINERS else "no container included"
    notes.append(
        Note("invalid-annotation", f"pod annotation {prefix}/{suffix} is not valid CSV; {outcome}")
    )
    return None if suffix == SKIP_CONTAINERS else frozenset()


def _append(container: Mapping[str, Any], field: str, base: str, items: list[Any]) -> list[PatchOp]:
    if not items:
        return []
    if container.get(field) is None:
        return [{"op": "add", "path": f"{base}/{field}", "value": items}]
    return [{"op": "add", "path": f"{base}/{field}/-", "value": item} for item in items]


def _credentials(name: str, plan: Plan, credentials: list[EnvVar]) -> list[EnvVar]:
    """The credential variables of one container: its own role when it has one, then the
    session name."""
    role = plan.container_roles.get(name) if plan.container_roles else None
    if role is not None:
        credentials = [{"name": credentials[0]["name"], "value": role}, *credentials[1:]]
    if plan.session_name is not None:
        credentials = [*credentials, plan.session_name]
    return credentials


def _env_additions(
    name: str,
    present: set[str],
    plan: Plan,
    credentials: list[EnvVar],
    keys: tuple[str, ...],
    notes: list[Note],
) -> list[EnvVar] | None:
    """What one container's env lacks, in upstream's order; None: leave the container alone."""
    has_credentials = not present.isdisjoint(keys)
    has_region = not present.isdisjoint(REGION_VARS)
    has_sts = STS_VAR in present
    if has_credentials and has_region and has_sts:
        # Upstream's per-container early exit: no variable and no mount either.
        text = f"container {name} already sets credentials, region and STS"
        notes.append(Note("variables-present", text))
        return None
    additions: list[EnvVar] = []
    if not has_sts and plan.regional_sts:
        additions.append({"name": STS_VAR, "value": "regional"})
    if not has_region and plan.region:
        additions.extend({"name": var, "value": plan.region} for var in REGION_VARS)
    if has_credentials:
        # A partially present pair is never completed (upstream).
        already = ", ".join(k for k in keys if k in present)
        text = f"container {name} already sets {already}; not overwritten"
        notes.append(Note("variables-present", text))
    elif not plan.container_roles and plan.session_name is None:
        additions.extend(credentials)  # upstream's case: nothing of ours to add
    else:
        additions.extend(
            var
            for var in _credentials(name, plan, credentials)
            if var["name"] not in present  # a session name the container sets is kept
        )
    return additions


def patch_for(
    pod: Mapping[str, Any],
    annotations: Mapping[str, str],
    plan: Plan,
    prefix: str,
    notes: list[Note],
) -> tuple[list[PatchOp], list[str], list[str]]:
    """The operations for `plan`, and the JSON pointers and names of the containers that
    take it."""
    metadata = mapping(pod.get("metadata"), "metadata")
    spec = mapping(pod.get("spec"), "spec")
    ops = _label_ops(pod, metadata) if plan.method == "container_credentials" else []
    token_volume = _volume_ops(spec, plan)
    ops += token_volume
    token_file = _token_file(spec, plan)
    credentials: list[EnvVar] = [
        {"name": name, "value": token_file if value is None else value}
        for name, value in plan.credentials
    ]
    keys = plan.credential_keys
    skip = include = None
    if annotations:  # most Pods have none of ours: no keys to build
        skip = _container_names(annotations, prefix, SKIP_CONTAINERS, notes)
        include = _container_names(annotations, prefix, INCLUDE_CONTAINERS, notes)
    targets: list[str] = []
    names: list[str] = []
    ca_file = "" if plan.endpoints is None else _pod_path(spec, CA_BUNDLE_FILE_PATH)
    with_ca = False
    for field, index, container, name in _containers(spec):
        if skip is not None and name in skip:
            notes.append(Note("container-skipped", f"container {name} skipped by annotation"))
            continue
        if include is not None and name not in include:
            notes.append(Note("container-skipped", f"container {name} not in include-containers"))
            continue
        base = f"/spec/{field}/{index}"
        targets.append(base)
        names.append(name)
        present = _part_names(container, field, index, "env")
        additions = _env_additions(name, present, plan, credentials, keys, notes)
        if additions is None:
            continue
        wanted: list[VolumeMount] = [
            {"name": plan.volume_name, "readOnly": True, "mountPath": plan.mount_path}
        ]
        if plan.endpoints is not None:
            more, mounted = endpoint_variables(name, present, plan.endpoints, ca_file, notes)
            additions += more
            wanted += [ca_mount()] if mounted else []
            with_ca = with_ca or mounted
        ops += _append(container, "env", base, list(additions))
        have = _part_names(container, field, index, "volumeMounts")
        ops += _append(
            container, "volumeMounts", base, [m for m in wanted if m["name"] not in have]
        )
    if with_ca:
        ops += _ca_volume_ops(spec, plan, after_token=bool(token_volume))
    return ops, targets, names


def _ca_volume_ops(spec: Mapping[str, Any], plan: Plan, *, after_token: bool) -> list[PatchOp]:
    """Ours: the CA bundle's volume, right after the token's when that was just added (first,
    or as the whole list), else first: the Pod's own volumes stay one unbroken run."""
    volumes = _list(spec.get("volumes"), "spec.volumes")
    names = {_name(v, f"spec.volumes[{i}]") for i, v in enumerate(volumes)}
    if plan.endpoints is None or plan.endpoints.ca_bundle is None or CA_BUNDLE_VOLUME in names:
        return []
    path = "/spec/volumes/1" if after_token else "/spec/volumes/0"
    return [{"op": "add", "path": path, "value": ca_volume(plan.endpoints.ca_bundle)}]
