"""Pure. The PodIdentityAssociation custom resource: parsing, validation and the index.

One association gives the Pods of one ServiceAccount the credentials of one IAM role. The object
is named after its ServiceAccount (the CRD's CEL rule requires `metadata.name ==
spec.serviceAccountName`), so the API server's own name uniqueness makes "one association per
ServiceAccount" hold across objects, which CEL, seeing one object at a time, cannot check. The
checks here repeat the CRD's, so an object stored before the CRD was tightened, or served by a
cluster without CEL, is refused the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.aws import IAM_ROLE_ARN

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "PLURAL",
    "Association",
    "AssociationError",
    "AssociationIndex",
    "parse_association",
]

API_GROUP = "podidentity.pod-identity-webhook.io"
API_VERSION = "v1alpha1"
KIND = "PodIdentityAssociation"
PLURAL = "podidentityassociations"

MAX_SESSION_POLICY = 2048  # STS AssumeRole `Policy`: at most 2,048 characters
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)


class AssociationError(ValueError):
    """The object is not a valid association; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Association:
    """One validated association."""

    namespace: str
    service_account: str
    role_arn: str
    uid: str = ""
    target_role_arn: str = ""
    external_id: str = ""
    """Sent with the target role's AssumeRole; defaults to the object's UID, as EKS generates
    one per association (status.externalId shows it for the target role's trust policy)."""
    disable_session_tags: bool = False
    session_policy: str = ""
    generation: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.service_account

    @property
    def association_id(self) -> str:
        """EKS-shaped `a-` id, stable for the object's lifetime."""
        return "a-" + self.uid.replace("-", "")[:17] if self.uid else ""

    @property
    def effective_role(self) -> str:
        """The role whose credentials the Pod gets (the target when chaining)."""
        return self.target_role_arn or self.role_arn


def _string(spec: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = spec.get(key)
    if value is None:
        if required:
            raise AssociationError(f"spec.{key} is required")
        return ""
    if not isinstance(value, str):
        raise AssociationError(f"spec.{key} must be a string")
    if required and not value:
        raise AssociationError(f"spec.{key} must not be empty")
    return value


def check_role_arn(value: str, where: str) -> str:
    if not IAM_ROLE_ARN.fullmatch(value):
        raise AssociationError(
            f"{where} {value!r} is not an IAM role ARN "
            "(arn:<partition>:iam::<12 digits>:role/<name>)"
        )
    return value


def check_session_policy(text: str) -> str:
    if len(text) > MAX_SESSION_POLICY:
        raise AssociationError(
            f"spec.sessionPolicy is {len(text)} characters; STS takes at most {MAX_SESSION_POLICY}"
        )
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise AssociationError(f"spec.sessionPolicy is not JSON: {exc}") from None
    if not isinstance(document, dict) or "Statement" not in document:
        raise AssociationError("spec.sessionPolicy must be an IAM policy object with a Statement")
    return text


def _spec(name: str, spec: Mapping[str, Any]) -> tuple[str, str, str, str, bool, str]:
    account = _string(spec, "serviceAccountName", required=True)
    if not _DNS_SUBDOMAIN.fullmatch(account):
        raise AssociationError(f"spec.serviceAccountName {account!r} is not a valid name")
    if account != name:
        raise AssociationError(
            f"metadata.name must equal spec.serviceAccountName ({account!r}): one "
            "association per ServiceAccount"
        )
    role = check_role_arn(_string(spec, "roleArn", required=True), "spec.roleArn")
    target = _string(spec, "targetRoleArn")
    if target:
        check_role_arn(target, "spec.targetRoleArn")
    external = _string(spec, "externalId")
    if external and not target:
        raise AssociationError("spec.externalId is only used with spec.targetRoleArn")
    if external and not EXTERNAL_ID.fullmatch(external):
        raise AssociationError(
            "spec.externalId must be 2-1224 characters of letters, digits and +=,.@:/-"
        )
    disable = spec.get("disableSessionTags", False)
    if not isinstance(disable, bool):
        raise AssociationError("spec.disableSessionTags must be a boolean")
    policy = _string(spec, "sessionPolicy")
    if policy:
        check_session_policy(policy)
    return account, role, target, external, disable, policy


def parse_association(obj: Any) -> Association:
    """A validated Association from a PodIdentityAssociation object; AssociationError if not."""
    if not isinstance(obj, dict):
        raise AssociationError("the object is not a JSON object")
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise AssociationError("metadata is missing")
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not namespace or not isinstance(name, str):
        raise AssociationError("metadata.namespace and metadata.name are required")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise AssociationError(f"{namespace}/{name}: spec is missing")
    try:
        account, role, target, external, disable, policy = _spec(name, spec)
    except AssociationError as exc:
        raise AssociationError(f"{namespace}/{name}: {exc}") from None
    uid = metadata.get("uid")
    uid = uid if isinstance(uid, str) else ""
    generation = metadata.get("generation")
    return Association(
        namespace=namespace,
        service_account=account,
        role_arn=role,
        uid=uid,
        target_role_arn=target,
        external_id=external or (uid if target else ""),
        disable_session_tags=disable,
        session_policy=policy,
        generation=generation if isinstance(generation, int) else 0,
    )


class AssociationIndex:
    """Associations by (namespace, ServiceAccount), fed by a list and then watch events."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Association] = {}
        self._by_object: dict[tuple[str, str], tuple[str, str]] = {}
        self.synced = False
        self.invalid: dict[tuple[str, str], str] = {}
        """(namespace, name) → why the object was refused; the broker reports it in status."""

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, namespace: str, service_account: str) -> Association | None:
        return self._by_key.get((namespace, service_account))

    def keys(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._by_key)

    def values(self) -> list[Association]:
        return list(self._by_key.values())

    @staticmethod
    def _object_key(obj: Mapping[str, Any]) -> tuple[str, str] | None:
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            return None
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if isinstance(namespace, str) and isinstance(name, str):
            return namespace, name
        return None

    def replace(self, objects: Iterable[Any]) -> list[str]:
        """A full list; returns the problems (objects skipped)."""
        self._by_key, self._by_object, self.invalid = {}, {}, {}
        problems = [p for obj in objects if (p := self.put(obj))]
        self.synced = True
        return problems

    def put(self, obj: Any) -> str | None:
        """Add or update one object; returns why it was refused, or None."""
        where = self._object_key(obj) if isinstance(obj, dict) else None
        if where is None:
            return "an association without metadata.namespace/name"
        self.delete(obj)
        try:
            association = parse_association(obj)
        except AssociationError as exc:
            self.invalid[where] = str(exc)
            return str(exc)
        self._by_key[association.key] = association
        self._by_object[where] = association.key
        return None

    def delete(self, obj: Any) -> None:
        where = self._object_key(obj) if isinstance(obj, dict) else None
        if where is None:
            return
        self.invalid.pop(where, None)
        key = self._by_object.pop(where, None)
        if key is not None:
            self._by_key.pop(key, None)
