"""Pure. IAM trust policies for IRSA roles and the matching annotated ServiceAccounts.

A role trusts the cluster's OIDC provider for one audience and for the subjects
`system:serviceaccount:<namespace>:<name>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webhook.aws import ACCOUNT, PARTITION, Arn, parse_arn
from webhook.errors import ConfigError

__all__ = [
    "DEFAULT_AUDIENCE",
    "OidcProvider",
    "parse_provider",
    "parse_service_account",
    "service_account_manifest",
    "subject",
    "trust_policy",
]

DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_ANNOTATION_PREFIX = "eks.amazonaws.com"


# --- trust policy and ServiceAccount -----------------------------------------------------------

_HOST_PATH = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s?#]*)?")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_SA_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_PATTERN = re.compile(r"[a-z0-9.*?-]+")
ANNOTATION_PREFIX_NAME = _SA_NAME  # both are DNS subdomains


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An IAM OIDC provider: its account, partition and issuer without `https://`."""

    partition: str
    account_id: str
    issuer_path: str  # host[/path], as in the provider ARN and the condition keys

    @property
    def arn(self) -> str:
        return str(
            Arn(self.partition, "iam", "", self.account_id, f"oidc-provider/{self.issuer_path}")
        )


def check_account(text: str) -> str:
    if not ACCOUNT.fullmatch(text):
        raise ValueError("must be a 12-digit AWS account ID")
    return text


def check_partition(text: str) -> str:
    if not PARTITION.fullmatch(text):
        raise ValueError("must be an AWS partition such as aws, aws-cn or aws-us-gov")
    return text


def parse_provider(text: str, account_id: str | None, partition: str | None) -> OidcProvider:
    """The provider from an ARN, or from an issuer URL or host[/path] plus account/partition."""
    arn = parse_arn(text)
    if arn is not None and arn.service == "iam" and arn.resource.startswith("oidc-provider/"):
        arn_partition, arn_account = arn.partition, arn.account
        path = arn.resource.removeprefix("oidc-provider/")
        try:
            check_partition(arn_partition)
            check_account(arn_account)
        except ValueError as exc:
            raise ConfigError(f"--provider {text!r}: {exc}") from None
        if account_id is not None and account_id != arn_account:
            raise ConfigError(f"--account-id {account_id} differs from the provider ARN's account")
        if partition is not None and partition != arn_partition:
            raise ConfigError(f"--partition {partition} differs from the provider ARN's partition")
        account_id, partition = arn_account, arn_partition
    else:
        if text.startswith("http://"):
            raise ConfigError("--provider: an OIDC provider's issuer is always https://")
        path = text.removeprefix("https://")
        if account_id is None:
            raise ConfigError("--account-id is required when --provider is not an ARN")
    if not _HOST_PATH.fullmatch(path):
        raise ConfigError(f"--provider: {text!r} is not an issuer host[/path], URL or ARN")
    return OidcProvider(partition or "aws", account_id, path)


def parse_service_account(text: str) -> tuple[str, str]:
    """`namespace:name`; either side may be a StringLike pattern with `*` or `?`."""
    namespace, colon, name = text.partition(":")
    if not colon or not namespace or not name:
        raise ValueError("must be namespace:serviceaccount (either may be * for any)")
    for part, pattern, what in (
        (namespace, _NAMESPACE, "namespace"),
        (name, _SA_NAME, "ServiceAccount name"),
    ):
        wildcard = "*" in part or "?" in part
        if (wildcard and not _PATTERN.fullmatch(part)) or (
            not wildcard and not pattern.fullmatch(part)
        ):
            raise ValueError(f"{part!r} is not a valid {what}")
    return namespace, name


def is_pattern(pair: tuple[str, str]) -> bool:
    return any("*" in part or "?" in part for part in pair)


def subject(namespace: str, name: str) -> str:
    """The `sub` claim of a ServiceAccount token."""
    return f"system:serviceaccount:{namespace}:{name}"


def _one_or_many(values: Sequence[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def trust_policy(
    provider: OidcProvider,
    service_accounts: Sequence[tuple[str, str]],
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """The role trust policy that lets these ServiceAccounts' tokens assume the role.

    Conditions under different operators must all hold, so when any pair is a pattern every
    subject goes under StringLike (a name without `*` or `?` matches only itself there).
    """
    if not service_accounts:
        raise ConfigError("at least one namespace:serviceaccount is needed")
    subjects = list(dict.fromkeys(subject(ns, sa) for ns, sa in service_accounts))
    aud_key, sub_key = f"{provider.issuer_path}:aud", f"{provider.issuer_path}:sub"
    if any(is_pattern(pair) for pair in service_accounts):
        condition: dict[str, Any] = {
            "StringEquals": {aud_key: audience},
            "StringLike": {sub_key: _one_or_many(subjects)},
        }
    else:
        condition = {"StringEquals": {aud_key: audience, sub_key: _one_or_many(subjects)}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider.arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def service_account_manifest(
    namespace: str,
    name: str,
    role_arn: str,
    *,
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX,
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """A ServiceAccount annotated for the webhook; `audience` only when it is not the default."""
    annotations = {f"{annotation_prefix}/role-arn": role_arn}
    if audience != DEFAULT_AUDIENCE:
        annotations[f"{annotation_prefix}/audience"] = audience
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
    }
