"""`pod-identity-webhook [serve] FLAGS`: the admission server, with upstream's command line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

import structlog

from webhook import __version__, telemetry
from webhook.cli.common import PROG, run_server
from webhook.config import (
    config_from_argv,
    serve_usage,
)
from webhook.errors import ConfigError
from webhook.server.lifecycle import serve


def serve_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """`pod-identity-webhook [serve] FLAGS`: the admission server."""
    try:
        config, wants_help, wants_version = config_from_argv(argv)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=stderr)
        return 2
    if wants_help:
        print(f"Usage: {PROG} [serve] [flags]", file=stdout)
        print(
            f"       {PROG} mutate|certs|oidc|trust-policy|broker|agent --help\n\nFlags:",
            file=stdout,
        )
        print(serve_usage(), file=stdout)
        return 0
    if wants_version:
        print(f"v{__version__}", file=stdout)
        return 0
    telemetry.configure_logs(fmt=config.log_format, verbosity=config.verbosity, stream=stdout)
    log = structlog.get_logger("webhook")
    if config.ignored_flags:
        log.info("klog_flags_accepted", flags=list(config.ignored_flags), note="accepted, not used")
    for notice in config.notices:
        log.warning(notice.event, detail=notice.message)
    return run_server("", serve(config), stderr=stderr)
