"""Pure. AWS names: ARNs, partitions and the role ARNs the webhook injects or judges.

One parser for every ARN the project reads (role ARNs in annotations and policies, OIDC
provider ARNs in `trust-policy`), so they all agree on what an ARN is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "IAM_ROLE_ARN",
    "SESSION_NAME_FIELDS",
    "Arn",
    "SessionName",
    "looks_like_role_arn",
    "parse_arn",
    "parse_session_name",
    "partition_for_region",
    "role_arn",
]

ACCOUNT = re.compile(r"[0-9]{12}")
PARTITION = re.compile(r"aws(?:-[a-z]+)*")
IAM_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}", re.ASCII)
"""A role ARN as IAM accepts it (its name and path characters); the PodIdentityAssociation
CRD's CEL rule is this same pattern, so the broker refuses exactly what the API server would."""

# Upstream's advisory check (Go RE2, ASCII \w and \d). A mismatch is reported, never enforced.
_UPSTREAM_ROLE_ARN = re.compile(r"arn:aws[a-z0-9-]*:iam::\d{12}:role/[\w/.@+=,-]+", re.ASCII)

# STS's RoleSessionName: 2 to 64 of these characters. A name STS would refuse is never injected.
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
FIELD_REF = "fieldRef:"
#: Pod fields the downward API can put into a variable and whose values STS accepts as a name.
SESSION_NAME_FIELDS = frozenset(
    {"metadata.name", "metadata.namespace", "metadata.uid", "spec.serviceAccountName"}
)


@dataclass(frozen=True, slots=True)
class Arn:
    """`arn:partition:service:region:account:resource`, split at the first five colons."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    @property
    def is_iam_role(self) -> bool:
        return IAM_ROLE_ARN.fullmatch(str(self)) is not None

    def __str__(self) -> str:
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(text: str) -> Arn | None:
    """The parts of an ARN, or None when `text` does not have an ARN's six fields."""
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2]:
        return None
    return Arn(*parts[1:])


def role_arn(partition: str, account: str, name: str) -> str:
    """The ARN of role `name` (upstream's --compose-role-arn)."""
    return str(Arn(partition, "iam", "", account, f"role/{name}"))


def looks_like_role_arn(text: str) -> bool:
    """Upstream's advisory check: a mismatch is reported, never refused."""
    return _UPSTREAM_ROLE_ARN.fullmatch(text) is not None


def partition_for_region(region: str) -> str:
    """AWS partition of a region, as upstream derives it for composed role ARNs."""
    for prefix, partition in (
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eusc-", "aws-eusc"),
    ):
        if region.startswith(prefix):
            return partition
    return "aws"


@dataclass(frozen=True, slots=True)
class SessionName:
    """The value of AWS_ROLE_SESSION_NAME: a literal name, or a field of the Pod read through
    the downward API (`fieldRef:metadata.name`), which works for Pods created with
    `generateName`, whose name does not exist yet when the webhook sees them."""

    value: str
    """The literal name, or the field path."""
    field: bool = False

    def __str__(self) -> str:
        return f"{FIELD_REF}{self.value}" if self.field else self.value


def parse_session_name(text: str) -> SessionName | None:
    """A SessionName from an annotation or flag value; None for `""` (no session name).

    ValueError says why a value is unusable. `:` is not a session-name character, so the
    `fieldRef:` form can never be read as a literal.
    """
    if text == "":
        return None
    if text.startswith(FIELD_REF):
        path = text.removeprefix(FIELD_REF)
        if path not in SESSION_NAME_FIELDS:
            allowed = ", ".join(sorted(SESSION_NAME_FIELDS))
            raise ValueError(f"{FIELD_REF}{path} is not one of the Pod fields {allowed}")
        return SessionName(path, field=True)
    if _SESSION_NAME.fullmatch(text) is None:
        raise ValueError(
            "a role session name is 2 to 64 letters, digits or +=,.@_- "
            f"(or {FIELD_REF}metadata.name), not {text!r}"
        )
    return SessionName(text)
