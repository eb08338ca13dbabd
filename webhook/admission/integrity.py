"""Pure. Injection integrity: which running Pods lack the credentials the webhook would give
them now (issue 16). The Pod auditor keeps a `SlimPod` per Pod and asks `missing` about it.

The question is answered by `decide` itself, on a Pod rebuilt from the little the auditor
keeps, so skip-containers, include-containers, a container's own role and variables a
container already sets count exactly as they do at admission. A Pod is reported when the
decision would add a credential variable (AWS_ROLE_ARN or AWS_CONTAINER_CREDENTIALS_FULL_URI)
to a container: region, STS and session-name variables alone are settings that changed since,
not missing credentials.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from webhook.admission.mutation import Decision, Sources, decide
from webhook.admission.patches import (
    CONTAINER_CREDENTIALS_VARS,
    REGION_VARS,
    ROLE_ARN_VARS,
    SESSION_NAME_VAR,
    STS_VAR,
)
from webhook.admission.wire import Method, Pod, RoleSource
from webhook.config import MutationConfig
from webhook.errors import InvalidPod

__all__ = [
    "Finding",
    "Interner",
    "Owner",
    "SlimContainer",
    "SlimPod",
    "Sweep",
    "missing",
    "slim",
]

SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"  # the webhook's objectSelector
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"  # the webhook's matchConditions
#: The variable names that can change whether `decide` finds credentials missing; the auditor
#: forgets every other one (the local STS and CA variables never do, so they are not kept).
WATCHED_VARIABLES = frozenset(
    {*ROLE_ARN_VARS, *CONTAINER_CREDENTIALS_VARS, *REGION_VARS, STS_VAR, SESSION_NAME_VAR}
)
_CREDENTIALS = frozenset({ROLE_ARN_VARS[0], CONTAINER_CREDENTIALS_VARS[0]})


@dataclass(frozen=True, slots=True)
class SlimContainer:
    name: str
    variables: frozenset[str]
    """The watched variable names the container sets."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The Pod's controller (a ReplicaSet, Job, StatefulSet...), which recreates it."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SlimPod:
    """What the auditor keeps of one Pod: enough for `decide`, an Event and a deletion."""

    namespace: str
    name: str
    uid: str
    service_account: str
    annotations: tuple[tuple[str, str], ...]
    """The prefixed annotations only; usually none."""
    init_containers: tuple[SlimContainer, ...]
    containers: tuple[SlimContainer, ...]
    owner: Owner | None
    created: str
    """metadata.creationTimestamp (RFC 3339, UTC): ordered like the times it names."""

    def as_pod(self) -> Pod:
        """The Pod as `decide` reads it."""

        def container(item: SlimContainer) -> dict[str, Any]:
            return {"name": item.name, "env": [{"name": name} for name in item.variables]}

        return cast(
            "Pod",
            {
                "metadata": {"name": self.name, "annotations": dict(self.annotations)},
                "spec": {
                    "serviceAccountName": self.service_account,
                    "initContainers": [container(c) for c in self.init_containers],
                    "containers": [container(c) for c in self.containers],
                },
            },
        )


class Interner:
    """Shares equal values between Pods: the containers of one Deployment's Pods and their
    owner are the same objects, not copies. Its owner clears it now and then, so values of
    Pods long gone are not kept (a value then exists at most twice)."""

    def __init__(self) -> None:
        self._values: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        return self._values.setdefault(value, value)

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()


def _strings(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _containers(items: Any, interned: Interner) -> tuple[SlimContainer, ...]:
    found = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        env = item.get("env")
        names = frozenset(
            var["name"]
            for var in (env if isinstance(env, list) else ())
            if isinstance(var, dict) and var.get("name") in WATCHED_VARIABLES
        )
        found.append(interned(SlimContainer(sys.intern(item["name"]), interned(names))))
    return interned(tuple(found))  # type: ignore[no-any-return]


def _owner(references: Any, interned: Interner) -> Owner | None:
    for reference in references if isinstance(references, list) else ():
        if isinstance(reference, dict) and reference.get("controller") is True:
            kind, name, uid = reference.get("kind"), reference.get("name"), reference.get("uid")
            if isinstance(kind, str) and isinstance(name, str) and isinstance(uid, str):
                return interned(Owner(sys.intern(kind), name, uid))  # type: ignore[no-any-return]
    return None


def slim(
    obj: Mapping[str, Any], prefix: str, interned: Interner, excluded: Iterable[str] = ()
) -> SlimPod | None:
    """The SlimPod of a Pod as the API server lists it; None for a Pod the webhook is never
    asked about (the skip label, a mirror Pod, an excluded namespace) or a malformed one."""
    metadata = _strings(obj.get("metadata"))
    spec = _strings(obj.get("spec"))
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        return None
    labels = _strings(metadata.get("labels"))
    annotations = _strings(metadata.get("annotations"))
    if SKIP_LABEL in labels or MIRROR_ANNOTATION in annotations or namespace in excluded:
        return None
    account = spec.get("serviceAccountName") or "default"
    kept = tuple(
        sorted(
            (key, value)
            for key, value in annotations.items()
            if key.startswith(prefix + "/") and isinstance(value, str)
        )
    )
    created = metadata.get("creationTimestamp")
    return SlimPod(
        namespace=sys.intern(namespace),
        name=name,
        uid=uid,
        service_account=sys.intern(account) if isinstance(account, str) else "default",
        annotations=interned(kept),
        init_containers=_containers(spec.get("initContainers"), interned),
        containers=_containers(spec.get("containers"), interned),
        owner=_owner(metadata.get("ownerReferences"), interned),
        created=sys.intern(created) if isinstance(created, str) else "",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A Pod without the credentials its ServiceAccount calls for, and why it should have them."""

    containers: tuple[str, ...]
    method: Method
    service_account: str
    role_arn: str
    role_source: RoleSource | None

    @property
    def message(self) -> str:
        """The Event's message: what is missing, what asked for it, what to do."""
        what = (
            f"role {self.role_arn} (from {self.role_source})"
            if self.method == "sts_web_identity"
            else "EKS Pod Identity container credentials"
        )
        return (
            f"ServiceAccount {self.service_account} calls for {what}, but container(s) "
            f"{', '.join(self.containers)} run without it: the webhook did not mutate this Pod "
            "(unreachable, failurePolicy Ignore, or a stale caBundle); recreate the Pod"
        )


def _lacking(decision: Decision, pod: Pod) -> tuple[str, ...]:
    """Names of the containers the decision would give a credential variable."""
    spec = pod["spec"]
    names = {
        "initContainers": [c["name"] for c in spec.get("initContainers", [])],
        "containers": [c["name"] for c in spec.get("containers", [])],
    }
    lacking: list[str] = []
    for op in decision.patch:
        parts = op["path"].split("/")  # /spec/<field>/<index>/env[/-]
        if len(parts) < 5 or parts[1] != "spec" or parts[4] != "env" or parts[2] not in names:
            continue
        values: Sequence[Any] = op["value"] if isinstance(op["value"], list) else [op["value"]]
        if any(isinstance(v, dict) and v.get("name") in _CREDENTIALS for v in values):
            name = names[parts[2]][int(parts[3])]
            if name not in lacking:
                lacking.append(name)
    return tuple(lacking)


def missing(pod: SlimPod, sources: Sources, config: MutationConfig) -> Finding | None:
    """The Finding when `decide` would now give one of the Pod's containers credentials."""
    rebuilt = pod.as_pod()
    try:
        decision = decide(rebuilt, namespace=pod.namespace, sources=sources, config=config)
    except InvalidPod:
        return None
    if decision.method is None:
        return None
    lacking = _lacking(decision, rebuilt)
    if not lacking:
        return None
    return Finding(
        containers=lacking,
        method=decision.method,
        service_account=decision.service_account,
        role_arn=decision.role_arn,
        role_source=decision.role_source,
    )


class Sweep:
    """`missing` for many Pods against one state of the sources: Pods of one template (same
    namespace, ServiceAccount, annotations and containers) are judged once. Make a new one
    whenever the sources may have changed."""

    def __init__(self, sources: Sources, config: MutationConfig) -> None:
        self._sources, self._config = sources, config
        self._seen: dict[tuple[Any, ...], Finding | None] = {}

    def __call__(self, pod: SlimPod) -> Finding | None:
        key = (
            pod.namespace,
            pod.service_account,
            pod.annotations,
            pod.init_containers,
            pod.containers,
        )
        if key not in self._seen:
            self._seen[key] = missing(pod, self._sources, self._config)
        return self._seen[key]
