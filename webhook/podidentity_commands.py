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
