"""`pod-identity-webhook broker`: EKS Auth's AssumeRoleForPodIdentity for self-managed clusters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from webhook import telemetry
from webhook.cli.common import PROG, fail, run_server
from webhook.errors import ConfigError
from webhook.flags import usage

__all__ = ["broker_command"]

BROKER_USAGE = f"""Usage: {PROG} broker --cluster-name NAME [flags]

Serves EKS Auth's AssumeRoleForPodIdentity over TLS for the node agents: checks each Pod's
token with a TokenReview, finds its PodIdentityAssociation and calls sts:AssumeRole with the
broker's own AWS credentials (the SDK's default chain) and EKS's session tags.

Flags:
"""


def broker_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    # Imported here: only this command needs botocore and the broker's server.
    from webhook.broker.config import BROKER_FLAGS, broker_config
    from webhook.broker.server import serve_broker

    try:
        config, wants_help = broker_config(argv)
    except ConfigError as exc:
        return fail(stderr, "broker", str(exc), 2)
    if wants_help:
        print(BROKER_USAGE + usage(BROKER_FLAGS), file=stdout)
        return 0
    telemetry.configure_logs(
        fmt=config.log_format, verbosity=config.verbosity, stream=stdout, server="broker"
    )
    return run_server("broker", serve_broker(config), stderr=stderr)
