"""`pod-identity-webhook agent`: the node agent serving the SDKs' container-credentials endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from webhook import telemetry
from webhook.cli.common import PROG, fail, run_server
from webhook.errors import ConfigError
from webhook.flags import usage

__all__ = ["agent_command"]

AGENT_USAGE = f"""Usage: {PROG} agent --broker-url https://HOST[:PORT] --cluster-name NAME [flags]

Serves the SDKs' container-credentials endpoint (GET /v1/credentials) on 169.254.170.23:80 and
[fd00:ec2::23]:80 on a link it sets up (CAP_NET_ADMIN), and gets each Pod's credentials from the
broker with its own Pod-bound token.

Flags:
"""


def agent_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    # Imported here: only this command needs pyroute2 and the agent's server.
    from webhook.agent.config import AGENT_FLAGS, agent_config
    from webhook.agent.server import serve_agent

    try:
        config, wants_help = agent_config(argv)
    except ConfigError as exc:
        return fail(stderr, "agent", str(exc), 2)
    if wants_help:
        print(AGENT_USAGE + usage(AGENT_FLAGS), file=stdout)
        return 0
    telemetry.configure_logs(
        fmt=config.log_format, verbosity=config.verbosity, stream=stdout, server="agent"
    )
    return run_server("agent", serve_agent(config), stderr=stderr)
