"""The `trust-policy` command: a role's trust policy and the ServiceAccount that uses it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

import yaml

from webhook.aws import parse_arn
from webhook.aws import role_arn as compose_role_arn
from webhook.cli.common import PROG, fail, parse_command, warn
from webhook.cli.pod_identity_trust import pod_identity_trust_command
from webhook.errors import ConfigError
from webhook.flags import FlagSpec
from webhook.gocompat import parse_go_bool
from webhook.irsa.trustpolicy import (
    ANNOTATION_PREFIX_NAME,
    DEFAULT_ANNOTATION_PREFIX,
    DEFAULT_AUDIENCE,
    OidcProvider,
    check_account,
    check_partition,
    is_pattern,
    parse_provider,
    parse_service_account,
    service_account_manifest,
    trust_policy,
)

# --- shared command helpers ----------------------------------------------------------------------


# --- the `trust-policy` command ------------------------------------------------------------------


def _output_kind(text: str) -> str:
    if text not in ("policy", "service-account", "both"):
        raise ValueError("must be policy, service-account or both")
    return text


def _check_role_arn(text: str) -> str:
    arn = parse_arn(text)
    if arn is None or not arn.is_iam_role:
        raise ValueError("must be an IAM role ARN, arn:<partition>:iam::<account>:role/<name>")
    return text


def _check_prefix(text: str) -> str:
    if not ANNOTATION_PREFIX_NAME.fullmatch(text):
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
    FlagSpec("account-id", check_account, "", "AWS account of the provider and role"),
    FlagSpec("partition", check_partition, "aws", "AWS partition (aws, aws-cn, ...)"),
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


def _warnings(provider: OidcProvider, pairs: Sequence[tuple[str, str]], role_arn: str) -> list[str]:
    """What is legal but probably not meant."""
    warnings = []
    arn = parse_arn(role_arn) if role_arn else None
    if arn is not None and (arn.account, arn.partition) != (
        provider.account_id,
        provider.partition,
    ):
        warnings.append(
            "the role and the OIDC provider are in different accounts or partitions; "
            "a role can only trust a provider of its own account"
        )
    if ("*", "*") in pairs:
        warnings.append("*:* lets every ServiceAccount of the cluster assume the role")
    if provider.issuer_path.endswith("/"):
        warnings.append("the provider ends with '/'; it must match the IAM provider exactly")
    return warnings


def trust_policy_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `trust-policy` command, IRSA's form or (`--pod-identity`) EKS Pod Identity's."""
    if any(arg == "--pod-identity" or arg.startswith("--pod-identity=") for arg in argv):
        return pod_identity_trust_command(argv, stdout=stdout, stderr=stderr)
    return _irsa_trust_policy(argv, stdout=stdout, stderr=stderr)


def _irsa_trust_policy(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    parsed = parse_command(
        "trust-policy", argv, TRUST_FLAGS, TRUST_USAGE, stdout=stdout, stderr=stderr
    )
    if isinstance(parsed, int):
        return parsed
    values = parsed.values
    if not values["provider"]:
        return fail(stderr, "trust-policy", "--provider is required (ARN or issuer)", 2)
    pairs: list[tuple[str, str]] = values["service-account"]
    if not pairs:
        return fail(
            stderr, "trust-policy", "--service-account NAMESPACE:NAME is required (repeatable)", 2
        )
    try:
        provider = parse_provider(
            values["provider"],
            values["account-id"] or None,
            values["partition"] if "partition" in parsed.explicit else None,
        )
    except ConfigError as exc:
        return fail(stderr, "trust-policy", str(exc), 2)
    output: str = values["output"]
    exact = [pair for pair in pairs if not is_pattern(pair)]
    if output == "service-account" and not exact:
        return fail(
            stderr,
            "trust-policy",
            "patterns match no single ServiceAccount; "
            "give an exact namespace:name for -o service-account",
            2,
        )

    role_arn: str = values["role-arn"]
    for warning in _warnings(provider, pairs, role_arn):
        warn(stderr, "trust-policy", warning)

    parts = []
    if output in ("policy", "both"):
        parts.append(json.dumps(trust_policy(provider, pairs, values["audience"]), indent=2) + "\n")
    if output in ("service-account", "both") and exact:
        placeholder = not role_arn
        shown = role_arn or compose_role_arn(provider.partition, provider.account_id, "ROLE_NAME")
        parts.append(
            _service_account_yaml(
                exact,
                shown,
                prefix=values["annotation-prefix"],
                audience=values["audience"],
                placeholder=placeholder,
            )
        )
    if output == "both" and len(exact) < len(pairs):
        warn(
            stderr,
            "trust-policy",
            "no ServiceAccount manifest for the wildcard pairs; annotate those accounts yourself",
        )
    print("---\n".join(parts), end="", file=stdout)
    return 0
