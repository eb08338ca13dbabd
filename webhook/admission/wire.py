"""Pure. The JSON shapes the webhook reads and writes, as TypedDicts, and the closed sets of
values that travel with them.

Objects arrive as raw JSON and are checked where they are read (a review can hold anything),
so these types describe what a well-formed object looks like; fields we do not list survive
untouched because the core never rebuilds an object, it only adds to it.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "AdmissionResponse",
    "AdmissionReview",
    "Container",
    "EnvVar",
    "LookupPath",
    "Method",
    "ObjectMeta",
    "PatchOp",
    "Pod",
    "PodSpec",
    "Reason",
    "RoleSource",
    "Volume",
    "VolumeMount",
]

Method = Literal["sts_web_identity", "container_credentials"]
"""How the SDK gets credentials: upstream's `pod_identity_webhook_pod_count{method}`."""

Reason = Literal["injected", "already-present", "no-role", "service-account-not-found"]
"""Why the built-in mutation did what it did."""

RoleSource = Literal[
    "service-account",
    "config-map",
    "config-map-wildcard",
    "container-credentials",
    "pod-identity-association",
]
"""Where the role (or the container-credentials identity) came from."""

LookupPath = Literal["cache", "informer", "api", "missed"]
"""How the ServiceAccount was found: already cached, or arrived while the request waited
through the watch or a live GET, or not at all."""


class EnvVar(TypedDict, total=False):
    name: str
    value: str
    valueFrom: dict[str, Any]


class VolumeMount(TypedDict, total=False):
    name: str
    mountPath: str
    readOnly: bool


class Container(TypedDict, total=False):
    name: str
    image: str
    env: list[EnvVar]
    volumeMounts: list[VolumeMount]


class Volume(TypedDict, total=False):
    name: str
    projected: dict[str, Any]
    configMap: dict[str, Any]


class ObjectMeta(TypedDict, total=False):
    name: str
    generateName: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]


class PodSpec(TypedDict, total=False):
    serviceAccountName: str
    containers: list[Container]
    initContainers: list[Container]
    ephemeralContainers: list[Container]
    volumes: list[Volume]
    nodeSelector: dict[str, str]
    os: dict[str, str]


class Pod(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PodSpec


class PatchOp(TypedDict):
    """One RFC 6902 operation. The core only ever adds (docs/compatibility.md, 2a)."""

    op: Literal["add"]
    path: str
    value: Any


class Status(TypedDict, total=False):
    code: int
    reason: str
    message: str


class AdmissionResponse(TypedDict, total=False):
    uid: str
    allowed: bool
    patch: str
    patchType: Literal["JSONPatch"]
    status: Status
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReview(TypedDict, total=False):
    apiVersion: str
    kind: str
    request: dict[str, Any]
    response: AdmissionResponse
