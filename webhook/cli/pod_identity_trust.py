"""`trust-policy --pod-identity`: the IAM side of EKS Pod Identity on a self-managed cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from webhook.aws import IAM_ROLE_ARN
from webhook.cli.common import HELP, PROG, fail, parse_command, warn
from webhook.flags import FlagSpec
from webhook.gocompat import parse_go_bool
from webhook.irsa.trustpolicy import parse_service_account
from webhook.podidentity.trust import association_manifest, broker_policy, target_trust_policy
from webhook.podidentity.wire import CLUSTER_NAME

__all__ = ["pod_identity_trust_command"]

COMMAND = "trust-policy --pod-identity"

USAGE = f"""Usage: {PROG} trust-policy --pod-identity --broker-role-arn ARN
       --cluster-name NAME --service-account NAMESPACE:NAME... [--role-arn ARN]...
       [-o policy|broker-policy|association|all]

EKS Pod Identity form: prints the trust policy of a role the broker assumes for these
ServiceAccounts (the broker's role as principal, sts:AssumeRole and sts:TagSession, conditions
on the eks-cluster-name, kubernetes-namespace and kubernetes-service-account session tags), the
broker role's own policy (assume only the --role-arn roles) and the PodIdentityAssociation
manifests. Nothing is sent to AWS.

Flags:
"""


def _role_arn(text: str) -> str:
    if not IAM_ROLE_ARN.fullmatch(text):
        raise ValueError("must be an IAM role ARN, arn:<partition>:iam::<account>:role/<name>")
    return text


def _cluster(text: str) -> str:
    if not CLUSTER_NAME.fullmatch(text):
        raise ValueError("letters, digits, - and _, 1-100 characters")
    return text


def _output(text: str) -> str:
    if text not in ("policy", "broker-policy", "association", "all"):
        raise ValueError("must be policy, broker-policy, association or all")
    return text


FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("pod-identity", parse_go_bool, False, "The EKS Pod Identity form", "bool"),
    FlagSpec("broker-role-arn", _role_arn, "", "The broker's own role (the principal)"),
    FlagSpec("cluster-name", _cluster, "", "The broker's --cluster-name"),
    FlagSpec(
        "service-account",
        parse_service_account,
        None,
        "namespace:serviceaccount allowed (* and ? patterns); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "role-arn",
        _role_arn,
        None,
        "Role the broker may assume (broker policy, associations); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("output", _output, "all", "policy, broker-policy, association or all", shorthand="o"),
    HELP,
)


def _missing(values: dict[str, Any]) -> list[str]:
    """The flags each output needs that were not given."""
    out: str = values["output"]
    missing = []
    if out in ("policy", "all"):
        missing += [f"--{n}" for n in ("broker-role-arn", "cluster-name") if not values[n]]
        if not values["service-account"]:
            missing.append("--service-account")
    if out in ("broker-policy", "association") and not values["role-arn"]:
        missing.append("--role-arn")
    if out == "association" and not values["service-account"]:
        missing.append("--service-account")
    return list(dict.fromkeys(missing))


def pod_identity_trust_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """`trust-policy --pod-identity`; returns the exit status."""
    parsed = parse_command(COMMAND, argv, FLAGS, USAGE, stdout=stdout, stderr=stderr)
    if isinstance(parsed, int):
        return parsed
    values = parsed.values
    out: str = values["output"]
    missing = _missing(values)
    if missing:
        return fail(stderr, COMMAND, f"{', '.join(missing)} required for -o {out}", 2)
    pairs: list[tuple[str, str]] = values["service-account"]
    roles: list[str] = values["role-arn"]
    if ("*", "*") in pairs:
        warn(stderr, COMMAND, "*:* lets every ServiceAccount use the role")
    parts = []
    if out in ("policy", "all"):
        document = target_trust_policy(values["broker-role-arn"], values["cluster-name"], pairs)
        parts.append(json.dumps(document, indent=2) + "\n")
    if out in ("broker-policy", "all") and roles:
        parts.append(json.dumps(broker_policy(roles), indent=2) + "\n")
    if out in ("association", "all") and roles:
        exact = [p for p in pairs if not any(c in "".join(p) for c in "*?")]
        for namespace, name in exact:
            manifest = association_manifest(namespace, name, roles[0])
            parts.append(yaml.safe_dump(manifest, sort_keys=False))
    print("---\n".join(parts), end="", file=stdout)
    return 0
