"""The command line: `pod-identity-webhook [serve] FLAGS`, `mutate`, `certs`, `oidc`,
`trust-policy`, `broker`, `agent`, `--version`.

With no subcommand the webhook serves, so an upstream Deployment's command line works
unchanged. The commands are the only modules that print; each is a thin shell over the
packages below it (see `common`). Each command's module is imported when it is chosen: the
webhook does not pay for the IRSA helpers, `mutate`'s patch library, the broker or the agent
(start-up time and resident memory; tests/cli/test_imports.py guards it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from webhook.cli.common import PROG

if TYPE_CHECKING:
    from webhook.admission.mutation import Jitter

__all__ = ["main", "run"]

COMMANDS = ("serve", "mutate", "certs", "oidc", "trust-policy", "broker", "agent")


def _unknown_command(word: str) -> str:
    import difflib  # only for a mistyped command

    message = f"{PROG}: unknown command {word!r}"
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f"\nCommands: {', '.join(COMMANDS)}; run {PROG} --help for the flags"


Command = Callable[..., int]
"""`command(argv, stdout=..., stderr=...)`; `mutate` also takes stdin and jitter."""


# Thin wrappers: each imports its command's module only when that command runs.
def _serve(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.serve import serve_command

    return serve_command(argv, stdout=stdout, stderr=stderr)


def _certs(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.certs import certs_command

    return certs_command(argv, stdout=stdout, stderr=stderr)


def _oidc(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.oidc import oidc_command

    return oidc_command(argv, stdout=stdout, stderr=stderr)


def _trust_policy(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.trust_policy import trust_policy_command

    return trust_policy_command(argv, stdout=stdout, stderr=stderr)


def _broker(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.broker import broker_command

    return broker_command(argv, stdout=stdout, stderr=stderr)


def _agent(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from webhook.cli.agent import agent_command

    return agent_command(argv, stdout=stdout, stderr=stderr)


def run(
    argv: Sequence[str],
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    jitter: Jitter | None = None,
) -> int:
    """Dispatch a command line; returns the exit status. `jitter` is `mutate`'s (default:
    random, as the webhook's)."""
    args = list(argv)
    command = args[0] if args else ""
    if command == "mutate":
        from webhook.admission.mutation import random_jitter
        from webhook.cli.mutate import mutate

        chosen_jitter = random_jitter if jitter is None else jitter
        return mutate(args[1:], stdin=stdin, stdout=stdout, stderr=stderr, jitter=chosen_jitter)
    chosen: dict[str, Command] = {
        "certs": _certs,
        "oidc": _oidc,
        "trust-policy": _trust_policy,
        "broker": _broker,
        "agent": _agent,
        "serve": _serve,
    }
    if command in chosen:
        return chosen[command](args[1:], stdout=stdout, stderr=stderr)
    if command and not command.startswith("-"):
        # Upstream's command line starts with a flag; a first word that is neither a flag nor a
        # command is a typo, and serving anyway would hide it.
        print(_unknown_command(command), file=stderr)
        return 2
    return _serve(args, stdout=stdout, stderr=stderr)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        status = run(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (`| head -1`) has all it wanted. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again, and end as a successful command.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 0
    sys.exit(status)
