"""IAM trust policies for IRSA roles and the matching annotated ServiceAccounts.

A role trusts the cluster's OIDC provider for one audience and for the subjects
`system:serviceaccount:<namespace>:<name>`; `trust_policy_command` prints both documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from webhook.errors import ConfigError
from webhook.goflags import FlagError, FlagSpec, parse_args, parse_go_bool, usage

__all__ = [
    "DEFAULT_AUDIENCE",
    "OidcProvider",
    "parse_provider",
    "parse_service_account",
    "service_account_manifest",
    "subject",
    "trust_policy",
    "trust_policy_command",
]

PROG = "pod-identity-webhook"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_ANNOTATION_PREFIX = "eks.amazonaws.com"


# --- trust policy and ServiceAccount -----------------------------------------------------------

_ACCOUNT = re.compile(r"[0-9]{12}")
_PARTITION = re.compile(r"aws(?:-[a-z]+)*")
_PROVIDER_ARN = re.compile(r"arn:(?P<partition>[^:]+):iam::(?P<account>[^:]*):oidc-provider/(.+)")
_ROLE_ARN = re.compile(r"arn:(?P<partition>aws(?:-[a-z]+)*):iam::(?P<account>[0-9]{12}):role/\S+")
_HOST_PATH = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s?#]*)?")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_SA_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_PATTERN = re.compile(r"[a-z0-9.*?-]+")
_PREFIX = _SA_NAME  # both are DNS subdomains


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An IAM OIDC provider: its account, partition and issuer without `https://`."""

    partition: str
    account_id: str
    issuer_path: str  # host[/path], as in the provider ARN and the condition keys

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:oidc-provider/{self.issuer_path}"


def _check_account(text: str) -> str:
    if not _ACCOUNT.fullmatch(text):
        raise ValueError("must be a 12-digit AWS account ID")
    return text


def _check_partition(text: str) -> str:
    if not _PARTITION.fullmatch(text):
        raise ValueError("must be an AWS partition such as aws, aws-cn or aws-us-gov")
    return text


def parse_provider(text: str, account_id: str | None, partition: str | None) -> OidcProvider:
    """The provider from an ARN, or from an issuer URL or host[/path] plus account/partition."""
    match = _PROVIDER_ARN.fullmatch(text)
    if match:
        arn_partition, arn_account, path = match.groups()
        try:
            _check_partition(arn_partition)
            _check_account(arn_account)
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


def _is_pattern(pair: tuple[str, str]) -> bool:
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
    if any(_is_pattern(pair) for pair in service_accounts):
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


# --- shared command helpers ----------------------------------------------------------------------


def _warn(stderr: TextIO, command: str, message: str) -> None:
    print(f"{PROG} {command}: warning: {message}", file=stderr)


# --- the `trust-policy` command ------------------------------------------------------------------


def _output_kind(text: str) -> str:
    if text not in ("policy", "service-account", "both"):
        raise ValueError("must be policy, service-account or both")
    return text


def _check_role_arn(text: str) -> str:
    if not _ROLE_ARN.fullmatch(text):
        raise ValueError("must be an IAM role ARN, arn:<partition>:iam::<account>:role/<name>")
    return text


def _check_prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ValueError("must be a DNS subdomain such as eks.amazonaws.com")
    return text


def _check_audience(text: str) -> str:
    if not text or any(char.isspace() for char in text):
        raise ValueError("must be a non-empty audience without white space")
    return text


TRUST_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "provider",
        str,
        "",
        "IAM OIDC provider: its ARN, or the issuer URL or host[/path] with --account-id",
    ),
    FlagSpec("account-id", _check_account, "", "AWS account of the provider and role"),
    FlagSpec("partition", _check_partition, "aws", "AWS partition (aws, aws-cn, ...)"),
    FlagSpec(
        "service-account",
        parse_service_account,
        None,
        "namespace:serviceaccount allowed to assume the role (* wildcards); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("audience", _check_audience, DEFAULT_AUDIENCE, "Token audience (aud)"),
    FlagSpec("role-arn", _check_role_arn, "", "Role ARN for the ServiceAccount annotation"),
    FlagSpec(
        "annotation-prefix",
        _check_prefix,
        DEFAULT_ANNOTATION_PREFIX,
        "The webhook's --annotation-prefix",
    ),
    FlagSpec(
        "output",
        _output_kind,
        "both",
        "policy, service-account, or both (policy, ---, manifests)",
        shorthand="o",
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

TRUST_USAGE = f"""Usage: {PROG} trust-policy --provider ARN|ISSUER [--account-id ID] [--partition P]
       --service-account NAMESPACE:NAME... [--audience AUD] [--role-arn ARN]
       [--annotation-prefix PREFIX] [-o policy|service-account|both]

Prints the IAM trust policy that lets Pods running as these ServiceAccounts assume a role with
their projected token (sts:AssumeRoleWithWebIdentity, conditions on aud and sub), then the
ServiceAccount manifests annotated with the role for the webhook. `ns:*` allows every
ServiceAccount of a namespace, `*:name` a name in any namespace (StringLike); exact pairs use
StringEquals. `--pod-identity --help` shows the EKS Pod Identity form.

Flags:
"""


def _service_account_yaml(
    pairs: Sequence[tuple[str, str]],
    role_arn: str,
    *,
    prefix: str,
    audience: str,
    placeholder: bool,
) -> str:
    documents = []
    for namespace, name in dict.fromkeys(pairs):
        manifest = service_account_manifest(
            namespace, name, role_arn, annotation_prefix=prefix, audience=audience
        )
        text = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
        if placeholder:
            text = (
                "# Replace ROLE_NAME with the name of the role that has the policy above.\n" + text
            )
        documents.append(text)
    return "---\n".join(documents)


def trust_policy_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `trust-policy` command; returns the exit status."""
    if any(arg == "--pod-identity" or arg.startswith("--pod-identity=") for arg in argv):
        from webhook.podidentity_commands import pod_identity_trust_command

        return pod_identity_trust_command(argv, stdout=stdout, stderr=stderr)
    try:
        parsed = parse_args(argv, TRUST_FLAGS)
    except FlagError as exc:
        print(f"{PROG} trust-policy: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(TRUST_USAGE + usage(TRUST_FLAGS), file=stdout)
        return 0
    if parsed.positional:
        print(f"{PROG} trust-policy: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    if not values["provider"]:
        print(f"{PROG} trust-policy: --provider is required (ARN or issuer)", file=stderr)
        return 2
    pairs: list[tuple[str, str]] = values["service-account"]
    if not pairs:
        print(
            f"{PROG} trust-policy: --service-account NAMESPACE:NAME is required (repeatable)",
            file=stderr,
        )
        return 2
    try:
        provider = parse_provider(
            values["provider"],
            values["account-id"] or None,
            values["partition"] if "partition" in parsed.explicit else None,
        )
    except ConfigError as exc:
        print(f"{PROG} trust-policy: {exc}", file=stderr)
        return 2
    output: str = values["output"]
    exact = [pair for pair in pairs if not _is_pattern(pair)]
    if output == "service-account" and not exact:
        print(
            f"{PROG} trust-policy: patterns match no single ServiceAccount; "
            "give an exact namespace:name for -o service-account",
            file=stderr,
        )
        return 2

    role_arn: str = values["role-arn"]
    if role_arn:
        match = _ROLE_ARN.fullmatch(role_arn)
        if match and (match["account"], match["partition"]) != (
            provider.account_id,
            provider.partition,
        ):
            _warn(
                stderr,
                "trust-policy",
                "the role and the OIDC provider are in different accounts or partitions; "
                "a role can only trust a provider of its own account",
            )
    if ("*", "*") in pairs:
        _warn(
            stderr, "trust-policy", "*:* lets every ServiceAccount of the cluster assume the role"
        )
    if provider.issuer_path.endswith("/"):
        _warn(
            stderr,
            "trust-policy",
            "the provider ends with '/'; it must match the IAM provider exactly",
        )

    parts = []
    if output in ("policy", "both"):
        parts.append(json.dumps(trust_policy(provider, pairs, values["audience"]), indent=2) + "\n")
    if output in ("service-account", "both") and exact:
        placeholder = not role_arn
        arn = role_arn or f"arn:{provider.partition}:iam::{provider.account_id}:role/ROLE_NAME"
        parts.append(
            _service_account_yaml(
                exact,
                arn,
                prefix=values["annotation-prefix"],
                audience=values["audience"],
                placeholder=placeholder,
            )
        )
    if output == "both" and len(exact) < len(pairs):
        _warn(
            stderr,
            "trust-policy",
            "no ServiceAccount manifest for the wildcard pairs; annotate those accounts yourself",
        )
    print("---\n".join(parts), end="", file=stdout)
    return 0
