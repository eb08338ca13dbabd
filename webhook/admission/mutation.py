"""Pure. Decides what a Pod needs and returns it as an additive JSON patch, with the reasons.

No I/O, no logging, no clock: the caller passes the identity sources and a jitter function.
The rules are upstream's (spec sections 3, 6, 7); the patch shape is ours (compatibility 2a):
only `add` operations for what is missing, so fields we do not know survive untouched and a Pod
that already has everything gets an empty patch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from webhook.admission.entries import (
    INCLUDE_CONTAINERS,
    SKIP_CONTAINERS,
    TOKEN_EXPIRATION,
    ConfigMapEntry,
    Note,
    ServiceAccountEntry,
    parse_skip_containers,
    parse_token_expiration,
)
from webhook.config import DEFAULT_TOKEN_EXPIRATION, MutationConfig
from webhook.errors import InvalidPod
from webhook.gocompat import go_path_join

__all__ = [
    "Decision",
    "Jitter",
    "PatchOp",
    "Sources",
    "decide",
    "escape_pointer",
]

PatchOp = dict[str, Any]
Jitter = Callable[[int, int], int]
"""Returns an integer in [low, high], both inclusive."""

Method = Literal["sts_web_identity", "container_credentials"]

WEB_IDENTITY_VOLUME = "aws-iam-token"
WEB_IDENTITY_TOKEN_PATH = "token"
POD_IDENTITY_LABEL = "eks.amazonaws.com/pod-identity"  # literal, whatever the prefix
JITTER_LOW = 79200  # upstream: default 86400 minus up to two hours

ROLE_ARN_VARS = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
CONTAINER_CREDENTIALS_VARS = (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
REGION_VARS = ("AWS_DEFAULT_REGION", "AWS_REGION")
STS_VAR = "AWS_STS_REGIONAL_ENDPOINTS"
WINDOWS_SELECTORS = ("kubernetes.io/os", "beta.kubernetes.io/os")


class Sources(Protocol):
    """Read-only view of the identity sources (the cache, the ConfigMap, the CC file)."""

    def service_account(self, namespace: str, name: str) -> ServiceAccountEntry | None: ...

    def config_map_entry(self, key: str) -> ConfigMapEntry | None: ...

    def container_credentials(self, namespace: str, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What the core decided for one Pod, and why."""

    patch: tuple[PatchOp, ...]
    reason: str
    """`injected`, `already-present`, `no-role`, or `service-account-not-found`."""
    method: Method | None
    """Set whenever a credential configuration applied, even if nothing had to be added."""
    role_source: str | None
    """`service-account`, `config-map`, `config-map-wildcard` or `container-credentials`."""
    role_arn: str
    service_account: str
    """`<namespace>/<name>` the decision was made for."""
    notes: tuple[Note, ...]
    audience: str = ""
    token_expiration: int = 0
    targets: tuple[str, ...] = ()
    """JSON pointers of the containers that carry the credentials (skipped ones excluded)."""

    @property
    def mutated(self) -> bool:
        return bool(self.patch)


def random_jitter(low: int, high: int) -> int:
    return random.randint(low, high)  # noqa: S311 - spreading refreshes, not a secret


def escape_pointer(token: str) -> str:
    """RFC 6901 reference token escaping."""
    return token.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True, slots=True)
class _Plan:
    method: Method
    volume_name: str
    mount_path: str
    token_path: str
    audience: str
    expiration: int
    regional_sts: bool
    credentials: tuple[tuple[str, str | None], ...]
    """The credential pair, in order; None stands for the token file's path."""
    credential_keys: tuple[str, ...]
    region: str


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPod(f"{where} must be an object")
    return value


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


def _string_map(value: Any, where: str) -> Mapping[str, str]:
    mapping = _mapping(value, where)
    for key, item in mapping.items():
        if item is not None and not isinstance(item, str):
            raise InvalidPod(f"{where}[{key!r}] must be a string")
    return mapping


def _not_mutated(
    reason: str, key: str, notes: list[Note], role_source: str | None = None
) -> Decision:
    return Decision((), reason, None, role_source, "", key, tuple(notes))


def decide(
    pod: Any,
    *,
    namespace: str,
    sources: Sources,
    config: MutationConfig,
    jitter: Jitter = random_jitter,
    default_service_account: str = "",
) -> Decision:
    """The Decision for `pod` created in `namespace`. Never modifies `pod`.

    Raises InvalidPod when `pod` does not have the shape of a Pod where the rules look.
    """
    if not isinstance(pod, dict):
        raise InvalidPod("the object must be a JSON object")
    metadata = _mapping(pod.get("metadata"), "metadata")
    annotations = _string_map(metadata.get("annotations"), "metadata.annotations")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise InvalidPod("spec must be an object")
    sa_name = spec.get("serviceAccountName") or default_service_account
    if not isinstance(sa_name, str):
        raise InvalidPod("spec.serviceAccountName must be a string")
    key = f"{namespace}/{sa_name}"
    notes: list[Note] = []
    if not namespace:
        notes.append(
            Note(
                "namespace-missing",
                "the review has no request.namespace, so no ServiceAccount can match",
            )
        )

    if sources.container_credentials(namespace, sa_name):
        plan = _container_credentials_plan(
            namespace, sa_name, annotations, sources, config, jitter, notes
        )
        role_source, role_arn = "container-credentials", ""
    else:
        found = _web_identity_plan(namespace, sa_name, annotations, sources, config, notes)
        if isinstance(found, Decision):
            return found
        plan, role_source, role_arn = found

    patch, targets = _patch(pod, metadata, spec, annotations, plan, config, notes)
    reason = "injected" if patch else "already-present"
    return Decision(
        tuple(patch),
        reason,
        plan.method,
        role_source,
        role_arn,
        key,
        tuple(notes),
        audience=plan.audience,
        token_expiration=plan.expiration,
        targets=tuple(targets),
    )


def _pod_expiration(
    annotations: Mapping[str, str], prefix: str, current: int, notes: list[Note]
) -> int:
    raw = annotations.get(f"{prefix}/{TOKEN_EXPIRATION}")
    if raw is None:
        return current
    value, raised = parse_token_expiration(raw)
    if value is None:
        notes.append(
            Note(
                "invalid-annotation",
                f"pod annotation {prefix}/{TOKEN_EXPIRATION}={raw!r} is not an integer; "
                f"using {current} seconds",
            )
        )
        return current
    if raised:
        notes.append(
            Note("expiration-clamped", f"token expiration {raw} raised to {value} seconds")
        )
    return value


def _web_identity_plan(
    namespace: str,
    sa_name: str,
    annotations: Mapping[str, str],
    sources: Sources,
    config: MutationConfig,
    notes: list[Note],
) -> tuple[_Plan, str, str] | Decision:
    key = f"{namespace}/{sa_name}"
    entry = sources.service_account(namespace, sa_name)
    if entry is not None:
        notes.extend(entry.notes)
    if entry is not None and entry.role_arn:
        role, audience, regional, expiration = (
            entry.role_arn,
            entry.audience,
            entry.regional_sts,
            entry.token_expiration,
        )
        source = "service-account"
    else:
        cm = sources.config_map_entry(key)
        source = "config-map"
        if cm is None:
            cm = sources.config_map_entry(f"*/{sa_name}")
            source = "config-map-wildcard"
        if cm is None:
            if entry is None:
                notes.append(Note("service-account-not-found", f"ServiceAccount {key} not found"))
                return _not_mutated("service-account-not-found", key, notes)
            return _not_mutated("no-role", key, notes)
        if not cm.role_arn:
            return _not_mutated("no-role", key, notes, source)
        role, audience, regional, expiration = (
            cm.role_arn,
            cm.audience,
            cm.regional_sts,
            cm.token_expiration,
        )
    expiration = _pod_expiration(annotations, config.annotation_prefix, expiration, notes)
    plan = _Plan(
        method="sts_web_identity",
        volume_name=WEB_IDENTITY_VOLUME,
        mount_path=config.token_mount_path,
        token_path=WEB_IDENTITY_TOKEN_PATH,
        audience=audience,
        expiration=expiration,
        regional_sts=regional,
        credentials=(("AWS_ROLE_ARN", role), ("AWS_WEB_IDENTITY_TOKEN_FILE", None)),
        credential_keys=ROLE_ARN_VARS,
        region=_region(entry, config),
    )
    return plan, source, role


def _container_credentials_plan(
    namespace: str,
    sa_name: str,
    annotations: Mapping[str, str],
    sources: Sources,
    config: MutationConfig,
    jitter: Jitter,
    notes: list[Note],
) -> _Plan:
    # Upstream: the SA entry (any role), else the exact ConfigMap entry, else false/86400.
    settings = config.container_credentials
    entry = sources.service_account(namespace, sa_name)
    cm = None if entry is not None else sources.config_map_entry(f"{namespace}/{sa_name}")
    source = entry or cm
    regional = source.regional_sts if source else False
    expiration = source.token_expiration if source else DEFAULT_TOKEN_EXPIRATION
    expiration = _pod_expiration(annotations, config.annotation_prefix, expiration, notes)
    if expiration == DEFAULT_TOKEN_EXPIRATION:
        expiration = jitter(JITTER_LOW, DEFAULT_TOKEN_EXPIRATION)
        notes.append(
            Note("expiration-jittered", f"default token expiration jittered to {expiration}")
        )
    return _Plan(
        method="container_credentials",
        volume_name=settings.volume_name,
        mount_path=settings.mount_path,
        token_path=settings.token_path,
        audience=settings.audience,
        expiration=expiration,
        regional_sts=regional,
        credentials=(
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", settings.full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", None),
        ),
        credential_keys=CONTAINER_CREDENTIALS_VARS,
        region=_region(entry, config),
    )


def _region(entry: ServiceAccountEntry | None, config: MutationConfig) -> str:
    # Ours: a `region` annotation on the ServiceAccount overrides --aws-default-region.
    if entry is not None and entry.region is not None:
        return entry.region
    return config.region


def _is_windows(spec: Mapping[str, Any]) -> bool:
    selectors = _string_map(spec.get("nodeSelector"), "spec.nodeSelector")
    if any(selectors.get(key) == "windows" for key in WINDOWS_SELECTORS):
        return True
    # Ours: spec.os.name pins the Pod to Windows nodes even without a node selector.
    os_field = spec.get("os")
    return isinstance(os_field, dict) and os_field.get("name") == "windows"


def _token_file(spec: Mapping[str, Any], plan: _Plan) -> str:
    path = go_path_join(plan.mount_path, plan.token_path)
    if _is_windows(spec):
        # Only the env value changes; the mountPath stays Unix-style (upstream).
        return "C:" + path.replace("/", "\\")
    return path


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any], str]]:
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(spec.get(field), f"spec.{field}")):
            where = f"spec.{field}[{index}]"
            yield field, index, container, _name(container, where)


def _patch(
    pod: Mapping[str, Any],
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    plan: _Plan,
    config: MutationConfig,
    notes: list[Note],
) -> tuple[list[PatchOp], list[str]]:
    ops: list[PatchOp] = []
    if plan.method == "container_credentials":
        labels = _string_map(metadata.get("labels"), "metadata.labels")
        if "metadata" not in pod or pod["metadata"] is None:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata",
                    "value": {"labels": {POD_IDENTITY_LABEL: "enabled"}},
                }
            )
        elif metadata.get("labels") is None:
            ops.append(
                {"op": "add", "path": "/metadata/labels", "value": {POD_IDENTITY_LABEL: "enabled"}}
            )
        elif labels.get(POD_IDENTITY_LABEL) != "enabled":
            # Upstream sets this label; an `add` on an existing key replaces its value.
            path = "/metadata/labels/" + escape_pointer(POD_IDENTITY_LABEL)
            ops.append({"op": "add", "path": path, "value": "enabled"})

    volumes = _list(spec.get("volumes"), "spec.volumes")
    volume_names = {_name(v, f"spec.volumes[{i}]") for i, v in enumerate(volumes)}
    if plan.volume_name not in volume_names:
        projection: dict[str, Any] = {"expirationSeconds": plan.expiration, "path": plan.token_path}
        if plan.audience:
            projection = {"audience": plan.audience, **projection}
        volume = {
            "name": plan.volume_name,
            "projected": {"sources": [{"serviceAccountToken": projection}]},
        }
        if spec.get("volumes") is None:
            ops.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
        else:
            ops.append({"op": "add", "path": "/spec/volumes/0", "value": volume})

    token_file = _token_file(spec, plan)
    credentials = [
        {"name": name, "value": token_file if value is None else value}
        for name, value in plan.credentials
    ]
    skip = _container_names(annotations, config.annotation_prefix, SKIP_CONTAINERS, notes)
    include = _container_names(annotations, config.annotation_prefix, INCLUDE_CONTAINERS, notes)
    targets: list[str] = []

    for field, index, container, name in _containers(spec):
        where = f"spec.{field}[{index}]"
        if skip is not None and name in skip:
            notes.append(Note("container-skipped", f"container {name} skipped by annotation"))
            continue
        if include is not None and name not in include:
            notes.append(Note("container-skipped", f"container {name} not in include-containers"))
            continue
        base = f"/spec/{field}/{index}"
        targets.append(base)
        env = _list(container.get("env"), f"{where}.env")
        present = {_name(var, f"{where}.env[{i}]") for i, var in enumerate(env)}
        has_credentials = any(key in present for key in plan.credential_keys)
        has_region = any(key in present for key in REGION_VARS)
        has_sts = STS_VAR in present
        if has_credentials and has_region and has_sts:
            notes.append(
                Note(
                    "variables-present",
                    f"container {name} already sets credentials, region and STS",
                )
            )
            continue
        additions: list[dict[str, str]] = []
        if not has_sts and plan.regional_sts:
            additions.append({"name": STS_VAR, "value": "regional"})
        if not has_region and plan.region:
            additions.extend({"name": var, "value": plan.region} for var in REGION_VARS)
        if has_credentials:
            already = ", ".join(k for k in plan.credential_keys if k in present)
            notes.append(
                Note(
                    "variables-present", f"container {name} already sets {already}; not overwritten"
                )
            )
        else:
            additions.extend(credentials)
        ops.extend(_append(container, "env", base, additions))
        mounts = _list(container.get("volumeMounts"), f"{where}.volumeMounts")
        mount_names = {_name(m, f"{where}.volumeMounts[{i}]") for i, m in enumerate(mounts)}
        if plan.volume_name not in mount_names:
            mount = {"name": plan.volume_name, "readOnly": True, "mountPath": plan.mount_path}
            ops.extend(_append(container, "volumeMounts", base, [mount]))
    return ops, targets


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


def _append(
    container: Mapping[str, Any], field: str, base: str, items: list[dict[str, Any]]
) -> list[PatchOp]:
    if not items:
        return []
    if container.get(field) is None:
        return [{"op": "add", "path": f"{base}/{field}", "value": items}]
    return [{"op": "add", "path": f"{base}/{field}/-", "value": item} for item in items]
