"""The `broker` and `agent` commands (EKS Pod Identity for self-managed clusters).

Kept out of cli.py so the dispatcher only gains two lines; both follow the serve command's
conventions: Go-grammar flags, `--help`, exit status 2 for a bad command line, structlog JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TextIO

from webhook import logs
from webhook.errors import ConfigError
from webhook.goflags import usage

PROG = "pod-identity-webhook"

BROKER_USAGE = f"""Usage: {PROG} broker --cluster-name NAME [flags]

Serves EKS Auth's AssumeRoleForPodIdentity over TLS for the node agents: checks each Pod's
token with a TokenReview, finds its PodIdentityAssociation and calls sts:AssumeRole with the
broker's own AWS credentials (the SDK's default chain) and EKS's session tags.

Flags:
"""

AGENT_USAGE = f"""Usage: {PROG} agent --broker-url https://HOST[:PORT] --cluster-name NAME [flags]

Serves the SDKs' container-credentials endpoint (GET /v1/credentials) on 169.254.170.23:80 and
[fd00:ec2::23]:80 on a link it sets up (CAP_NET_ADMIN), and gets each Pod's credentials from the
broker with its own Pod-bound token.

Flags:
"""


def _run(coroutine_factory: object) -> int:
    from webhook.cli import _loop_factory

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coroutine_factory)  # type: ignore[arg-type]


def broker_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.broker.config import BROKER_FLAGS, broker_config

    try:
        config, wants_help = broker_config(argv)
    except ConfigError as exc:
        print(f"{PROG} broker: {exc}", file=stderr)
        return 2
    if wants_help:
        print(BROKER_USAGE + usage(BROKER_FLAGS), file=stdout)
        return 0
    logs.configure(fmt=config.log_format, verbosity=config.verbosity, stream=stdout)
    from webhook.broker.server import serve_broker

    try:
        return _run(serve_broker(config))
    except ConfigError as exc:
        print(f"{PROG} broker: {exc}", file=stderr)
        return 2
    except OSError as exc:
        print(f"{PROG} broker: cannot serve: {exc}", file=stderr)
        return 1


def agent_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.agent.config import AGENT_FLAGS, agent_config

    try:
        config, wants_help = agent_config(argv)
    except ConfigError as exc:
        print(f"{PROG} agent: {exc}", file=stderr)
        return 2
    if wants_help:
        print(AGENT_USAGE + usage(AGENT_FLAGS), file=stdout)
        return 0
    logs.configure(fmt=config.log_format, verbosity=config.verbosity, stream=stdout)
    from webhook.agent.server import serve_agent

    try:
        return _run(serve_agent(config))
    except ConfigError as exc:
        print(f"{PROG} agent: {exc}", file=stderr)
        return 2
    except OSError as exc:
        print(f"{PROG} agent: cannot serve: {exc}", file=stderr)
        return 1


POD_IDENTITY_TRUST_USAGE = f"""Usage: {PROG} trust-policy --pod-identity --broker-role-arn ARN
       --cluster-name NAME --service-account NAMESPACE:NAME... [--role-arn ARN]...
       [-o policy|broker-policy|association|all]

EKS Pod Identity form: prints the trust policy of a role the broker assumes for these
ServiceAccounts (the broker's role as principal, sts:AssumeRole and sts:TagSession, conditions
on the eks-cluster-name, kubernetes-namespace and kubernetes-service-account session tags), the
broker role's own policy (assume only the --role-arn roles) and the PodIdentityAssociation
manifests. Nothing is sent to AWS.

Flags:
"""


def pod_identity_trust_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """`trust-policy --pod-identity`; returns the exit status."""
    import json

    import yaml

    from webhook.goflags import FlagError, FlagSpec, parse_args, parse_go_bool
    from webhook.podidentity.associations import ROLE_ARN as ROLE
    from webhook.podidentity.trust import (
        association_manifest,
        broker_policy,
        target_trust_policy,
    )
    from webhook.podidentity.wire import CLUSTER_NAME
    from webhook.trustpolicy import parse_service_account

    def role_arn(text: str) -> str:
        if not ROLE.fullmatch(text):
            raise ValueError("must be an IAM role ARN, arn:<partition>:iam::<account>:role/<name>")
        return text

    def cluster(text: str) -> str:
        if not CLUSTER_NAME.fullmatch(text):
            raise ValueError("letters, digits, - and _, 1-100 characters")
        return text

    def output(text: str) -> str:
        if text not in ("policy", "broker-policy", "association", "all"):
            raise ValueError("must be policy, broker-policy, association or all")
        return text

    flags = (
        FlagSpec("pod-identity", parse_go_bool, False, "The EKS Pod Identity form", "bool"),
        FlagSpec("broker-role-arn", role_arn, "", "The broker's own role (the principal)"),
        FlagSpec("cluster-name", cluster, "", "The broker's --cluster-name"),
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
            role_arn,
            None,
            "Role the broker may assume (broker policy, associations); repeatable",
            "stringArray",
            repeatable=True,
        ),
        FlagSpec(
            "output", output, "all", "policy, broker-policy, association or all", shorthand="o"
        ),
        FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
    )
    where = f"{PROG} trust-policy --pod-identity"
    try:
        parsed = parse_args(argv, flags)
    except FlagError as exc:
        print(f"{where}: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(POD_IDENTITY_TRUST_USAGE + usage(flags), file=stdout)
        return 0
    if parsed.positional:
        print(f"{where}: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    out: str = values["output"]
    pairs: list[tuple[str, str]] = values["service-account"]
    roles: list[str] = values["role-arn"]
    missing = []
    if out in ("policy", "all"):
        missing += [f"--{n}" for n in ("broker-role-arn", "cluster-name") if not values[n]]
        if not pairs:
            missing.append("--service-account")
    if out in ("broker-policy", "association") and not roles:
        missing.append("--role-arn")
    if out == "association" and not pairs:
        missing.append("--service-account")
    if missing:
        print(f"{where}: {', '.join(dict.fromkeys(missing))} required for -o {out}", file=stderr)
        return 2
    if ("*", "*") in pairs:
        print(f"{where}: warning: *:* lets every ServiceAccount use the role", file=stderr)
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
