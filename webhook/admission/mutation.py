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
from typing import Any, Protocol

from webhook.admission.endpoints import Endpoints, resolve_endpoints
from webhook.admission.entries import (
    CONTAINER_ROLE_ARN,
    NO_SESSION_NAME,
    REQUIRE_CREDENTIALS_LABEL,
    SESSION_NAME,
    TOKEN_EXPIRATION,
    ConfigMapEntry,
    ServiceAccountEntry,
    parse_session_name_annotation,
    parse_token_expiration,
)
from webhook.admission.notes import Note
from webhook.admission.patches import SESSION_NAME_VAR, Plan, mapping, patch_for, string_map
from webhook.admission.wire import EnvVar, Method, PatchOp, Pod, Reason, RoleSource
from webhook.aws import SessionName, looks_like_role_arn
from webhook.aws import role_arn as compose_role_arn
from webhook.config import DEFAULT_TOKEN_EXPIRATION, MutationConfig
from webhook.errors import InvalidPod

__all__ = ["Decision", "Jitter", "Sources", "decide", "random_jitter"]

Jitter = Callable[[int, int], int]
"""Returns an integer in [low, high], both inclusive."""

WEB_IDENTITY_VOLUME = "aws-iam-token"
WEB_IDENTITY_TOKEN_PATH = "token"
JITTER_LOW = 79200  # upstream: default 86400 minus up to two hours
SESSION_NAME_LIMIT = 64  # STS refuses longer role session names


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
    container_roles: tuple[tuple[str, str], ...] = ()
    """Ours: (container, role) for containers that take credentials with a role of their own."""
    session_name: SessionName | None = None
    """Ours: the AWS_ROLE_SESSION_NAME given to the containers that take credentials."""
    required: bool = False
    """Ours: the Pod carries `eks.amazonaws.com/require-credentials: "true"`."""

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role the Pod's containers get: the Pod's, then the containers' own."""
        own = tuple(dict.fromkeys(role for _, role in self.container_roles))
        return (self.role_arn, *own) if self.role_arn else own

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
    labels = metadata.get("labels")  # read, not checked: only container credentials label
    required = isinstance(labels, dict) and labels.get(REQUIRE_CREDENTIALS_LABEL) == "true"
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
    found = Decision(
        namespace=namespace, name=name, entry=entry, reason="injected", required=required
    )
    roles = _container_roles(annotations, config, notes) if annotations else {}
    session: SessionName | None = None

    if sources.container_credentials(namespace, name):
        plan = _container_credentials_plan(found, annotations, sources, config, jitter, notes)
        role_source: RoleSource = "container-credentials"
        role_arn = ""
        if roles:
            text = "container-role-arn annotations apply to web-identity roles only; ignored"
            notes.append(Note("invalid-annotation", text))
            roles = {}
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
                required=required,
            )
        role_source, (role_arn, audience, regional, expiration) = role
        expiration = _pod_expiration(annotations, config.annotation_prefix, expiration, notes)
        session = _session_name(metadata, spec, annotations, entry, config, notes)
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
            container_roles=roles,
            session_name=_session_variable(session) if session is not None else None,
        )
    plan = _with_endpoints(plan, entry, config, notes)

    patch, targets, names = patch_for(pod, annotations, plan, config.annotation_prefix, notes)
    applied = _applied_roles(roles, names, config.annotation_prefix, notes) if roles else ()
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
        container_roles=applied,
        session_name=session,
        required=required,
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


def _container_roles(
    annotations: Mapping[str, str], config: MutationConfig, notes: list[Note]
) -> dict[str, str]:
    """Ours: `<prefix>/container-role-arn.<container>` annotations, container → role."""
    start = f"{config.annotation_prefix}/{CONTAINER_ROLE_ARN}"
    roles: dict[str, str] = {}
    for key, value in annotations.items():
        if not key.startswith(start):
            continue
        container = key.removeprefix(start)
        if not container or not value:
            notes.append(
                Note(
                    "invalid-annotation",
                    f"pod annotation {key} needs a container "
                    "name in the key and a role in the value; ignored",
                )
            )
            continue
        role = value
        if config.compose_role_arn and "arn:" not in role:
            role = compose_role_arn(config.partition, config.account_id, role)
        if not looks_like_role_arn(role):
            notes.append(
                Note(
                    "invalid-role-arn",
                    f"role ARN {role!r} of container {container} does not look valid",
                )
            )
        roles[container] = role
    return roles


def _applied_roles(
    roles: Mapping[str, str], names: list[str], prefix: str, notes: list[Note]
) -> tuple[tuple[str, str], ...]:
    """The containers' own roles that apply, each explained; the others are reported."""
    applied = []
    for container, role in roles.items():
        if container in names:
            applied.append((container, role))
            notes.append(
                Note(
                    "container-role",
                    f"container {container} gets its own role {role} with the Pod's token",
                )
            )
        else:
            text = (
                f"pod annotation {prefix}/{CONTAINER_ROLE_ARN}{container}: no container "
                f"{container} takes credentials (absent or skipped); ignored"
            )
            notes.append(Note("invalid-annotation", text))
    return tuple(applied)


def _session_name(
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    entry: ServiceAccountEntry | None,
    config: MutationConfig,
    notes: list[Note],
) -> SessionName | None:
    """Ours: the Pod's annotation, else the ServiceAccount's, else --role-session-name."""
    session = None
    raw = annotations.get(f"{config.annotation_prefix}/{SESSION_NAME}")
    if raw is not None:
        where = f"pod annotation {config.annotation_prefix}/{SESSION_NAME}"
        session = parse_session_name_annotation(raw, where, notes)
    if session is None and entry is not None:
        session = entry.session_name
    if session is None:
        session = config.session_name
    if session is None or session is NO_SESSION_NAME:
        return None
    if session.field and session.value in ("metadata.name", "spec.serviceAccountName"):
        # Known now unless generateName makes the name later (at most 63 characters then).
        source = metadata if session.value == "metadata.name" else spec
        value = source.get(session.value.split(".")[1])
        if isinstance(value, str) and len(value) > SESSION_NAME_LIMIT:
            text = (
                f"role session name from {session.value} would be {len(value)} characters; "
                f"STS takes at most {SESSION_NAME_LIMIT}, so none is set"
            )
            notes.append(Note("invalid-annotation", text))
            return None
    return session


def _session_variable(session: SessionName) -> EnvVar:
    if session.field:
        return {"name": SESSION_NAME_VAR, "valueFrom": {"fieldRef": {"fieldPath": session.value}}}
    return {"name": SESSION_NAME_VAR, "value": session.value}


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
