"""Pure. Decides what a Pod needs, with the reasons: upstream's rules (spec sections 3, 6, 7).

No I/O, no logging, no clock: the caller passes the identity sources and a jitter function.
Which ServiceAccount, which source of the role and which token settings apply is decided here;
the additive patch that carries them is built by `patches`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from webhook.admission.endpoints import Endpoints, resolve_endpoints
from webhook.admission.entries import (
    TOKEN_EXPIRATION,
    ConfigMapEntry,
    ServiceAccountEntry,
    parse_token_expiration,
)
from webhook.admission.notes import Note
from webhook.admission.patches import Plan, mapping, patch_for, string_map
from webhook.admission.wire import Method, PatchOp, Pod, Reason, RoleSource
from webhook.config import DEFAULT_TOKEN_EXPIRATION, MutationConfig
from webhook.errors import InvalidPod

__all__ = ["Decision", "Jitter", "Sources", "decide", "random_jitter"]

Jitter = Callable[[int, int], int]
"""Returns an integer in [low, high], both inclusive."""

WEB_IDENTITY_VOLUME = "aws-iam-token"
WEB_IDENTITY_TOKEN_PATH = "token"
JITTER_LOW = 79200  # upstream: default 86400 minus up to two hours


class Sources(Protocol):
    """Read-only view of the identity sources (the cache, the ConfigMap, the CC file)."""

    def service_account(self, namespace: str, name: str) -> ServiceAccountEntry | None: ...

    def config_map_entry(self, key: str) -> ConfigMapEntry | None: ...

    def container_credentials(self, namespace: str, name: str) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the core decided for one Pod, and why."""

    namespace: str
    name: str
    """The ServiceAccount's name (the namespace is the request's)."""
    entry: ServiceAccountEntry | None
    """The ServiceAccount's cache entry, None when it was not found."""
    reason: Reason
    patch: tuple[PatchOp, ...] = ()
    method: Method | None = None
    """Set whenever a credential configuration applied, even if nothing had to be added."""
    role_source: RoleSource | None = None
    role_arn: str = ""
    endpoints: Endpoints | None = None
    """Ours: the local STS and CA bundle the Pod's SDK is pointed at, when any applies."""
    notes: tuple[Note, ...] = ()
    audience: str = ""
    token_expiration: int = 0
    targets: tuple[str, ...] = ()
    """JSON pointers of the containers that carry the credentials (skipped ones excluded)."""

    @property
    def service_account(self) -> str:
        """`<namespace>/<name>`, as logs and messages show it."""
        return f"{self.namespace}/{self.name}"

    @property
    def mutated(self) -> bool:
        return bool(self.patch)


def random_jitter(low: int, high: int) -> int:
    return random.randint(low, high)  # noqa: S311 - spreading refreshes, not a secret


def decide(
    pod: Pod,
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
    metadata = mapping(pod.get("metadata"), "metadata")
    annotations = string_map(metadata.get("annotations"), "metadata.annotations")
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise InvalidPod("spec must be an object")
    name = spec.get("serviceAccountName") or default_service_account
    if not isinstance(name, str):
        raise InvalidPod("spec.serviceAccountName must be a string")
    notes: list[Note] = []
    if not namespace:
        text = "the review has no request.namespace, so no ServiceAccount can match"
        notes.append(Note("namespace-missing", text))
    entry = sources.service_account(namespace, name)
    found = Decision(namespace=namespace, name=name, entry=entry, reason="injected")

    if sources.container_credentials(namespace, name):
        plan = _container_credentials_plan(found, annotations, sources, config, jitter, notes)
        role_source: RoleSource = "container-credentials"
        role_arn = ""
    else:
        if entry is not None:
            notes.extend(entry.notes)
        role = _role(found, sources)
        if isinstance(role, Decision):
            return Decision(
                namespace=namespace,
                name=name,
                entry=entry,
                reason=role.reason,
                role_source=role.role_source,
                notes=(*notes, *role.notes),
            )
        role_source, (role_arn, audience, regional, expiration) = role
        expiration = _pod_expiration(annotations, config.annotation_prefix, expiration, notes)
        plan = Plan(
            method="sts_web_identity",
            volume_name=WEB_IDENTITY_VOLUME,
            mount_path=config.token_mount_path,
            token_path=WEB_IDENTITY_TOKEN_PATH,
            audience=audience,
            expiration=expiration,
            regional_sts=regional,
            credentials=(("AWS_ROLE_ARN", role_arn), ("AWS_WEB_IDENTITY_TOKEN_FILE", None)),
            region=_region(entry, config),
        )
    plan = _with_endpoints(plan, entry, config, notes)

    patch, targets = patch_for(pod, annotations, plan, config.annotation_prefix, notes)
    return Decision(
        namespace=namespace,
        name=name,
        entry=entry,
        reason="injected" if patch else "already-present",
        patch=tuple(patch),
        method=plan.method,
        role_source=role_source,
        role_arn=role_arn,
        endpoints=plan.endpoints,
        notes=tuple(notes),
        audience=plan.audience,
        token_expiration=plan.expiration,
        targets=tuple(targets),
    )


_RoleSettings = tuple[str, str, bool, int]  # role ARN, audience, regional STS, expiration


def _role(found: Decision, sources: Sources) -> tuple[RoleSource, _RoleSettings] | Decision:
    """Upstream's precedence: the ServiceAccount's annotation, then the ConfigMap's exact
    entry, then its `*` wildcard. A Decision when no role applies."""
    entry = found.entry
    if entry is not None and entry.role_arn:
        settings = (entry.role_arn, entry.audience, entry.regional_sts, entry.token_expiration)
        return "service-account", settings
    source: RoleSource = "config-map"
    cm = sources.config_map_entry(found.service_account)
    if cm is None:
        source = "config-map-wildcard"
        cm = sources.config_map_entry(f"*/{found.name}")
    if cm is None:
        if entry is None:
            note = Note(
                "service-account-not-found", f"ServiceAccount {found.service_account} not found"
            )
            return _not_mutated(found, "service-account-not-found", notes=(note,))
        return _not_mutated(found, "no-role")
    if not cm.role_arn:
        return _not_mutated(found, "no-role", role_source=source)
    return source, (cm.role_arn, cm.audience, cm.regional_sts, cm.token_expiration)


def _not_mutated(
    found: Decision,
    reason: Reason,
    *,
    role_source: RoleSource | None = None,
    notes: tuple[Note, ...] = (),
) -> Decision:
    return Decision(
        namespace=found.namespace,
        name=found.name,
        entry=found.entry,
        reason=reason,
        role_source=role_source,
        notes=notes,
    )


def _pod_expiration(
    annotations: Mapping[str, str], prefix: str, current: int, notes: list[Note]
) -> int:
    raw = annotations.get(f"{prefix}/{TOKEN_EXPIRATION}")
    if raw is None:
        return current
    value, raised = parse_token_expiration(raw)
    if value is None:
        text = (
            f"pod annotation {prefix}/{TOKEN_EXPIRATION}={raw!r} is not an integer; "
            f"using {current} seconds"
        )
        notes.append(Note("invalid-annotation", text))
        return current
    if raised:
        notes.append(
            Note("expiration-clamped", f"token expiration {raw} raised to {value} seconds")
        )
    return value


def _container_credentials_plan(
    found: Decision,
    annotations: Mapping[str, str],
    sources: Sources,
    config: MutationConfig,
    jitter: Jitter,
    notes: list[Note],
) -> Plan:
    # Upstream: the SA entry (any role), else the exact ConfigMap entry, else false/86400.
    settings = config.container_credentials
    entry = found.entry
    cm = None if entry is not None else sources.config_map_entry(found.service_account)
    source = entry or cm
    regional = source.regional_sts if source else False
    expiration = source.token_expiration if source else DEFAULT_TOKEN_EXPIRATION
    expiration = _pod_expiration(annotations, config.annotation_prefix, expiration, notes)
    if expiration == DEFAULT_TOKEN_EXPIRATION:
        expiration = jitter(JITTER_LOW, DEFAULT_TOKEN_EXPIRATION)
        text = f"default token expiration jittered to {expiration}"
        notes.append(Note("expiration-jittered", text))
    return Plan(
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
        region=_region(entry, config),
    )


def _region(entry: ServiceAccountEntry | None, config: MutationConfig) -> str:
    # Ours: a `region` annotation on the ServiceAccount overrides --aws-default-region.
    if entry is not None and entry.region is not None:
        return entry.region
    return config.region


def _with_endpoints(
    plan: Plan, entry: ServiceAccountEntry | None, config: MutationConfig, notes: list[Note]
) -> Plan:
    """Ours: a local STS and a CA bundle with the credentials (`endpoints`)."""
    endpoints = resolve_endpoints(entry.endpoints if entry else None, config, notes)
    return plan if endpoints is None else dataclasses.replace(plan, endpoints=endpoints)
