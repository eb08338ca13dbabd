"""Command line: `pod-identity-webhook [serve] FLAGS`, `mutate`, `certs`, `--version`.

With no subcommand the webhook serves, so an upstream Deployment's command line works unchanged.
This is the only module that reads the environment or prints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import jsonpatch
import structlog
import yaml

from webhook import __version__, logs
from webhook.certs import certs_command
from webhook.config import (
    EXTENSION_FLAGS,
    MUTATION_FLAGS,
    MutationConfig,
    config_from_argv,
    mutation_config,
    serve_usage,
)
from webhook.errors import BadReview, ConfigError, InputError, WebhookError
from webhook.extensions import Extras, extend, load_extensions
from webhook.goflags import FlagError, FlagSpec, parse_args, parse_go_bool, usage
from webhook.imds import account_and_partition
from webhook.mutation import Decision, Jitter, decide, random_jitter
from webhook.oidc import oidc_command
from webhook.reviews import AdmissionRequest, parse_review, respond
from webhook.server import serve
from webhook.sources import StaticSources, load_documents, read_text
from webhook.trustpolicy import trust_policy_command

PROG = "pod-identity-webhook"
OFFLINE_UID = "00000000-0000-0000-0000-000000000000"


def _output(text: str) -> str:
    if text not in ("pod", "patch", "review"):
        raise ValueError("must be pod, patch or review")
    return text


MUTATE_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "filename",
        str,
        "",
        "Pod manifest or AdmissionReview (YAML or JSON); - for stdin",
        shorthand="f",
    ),
    FlagSpec(
        "service-accounts",
        str,
        None,
        "ServiceAccount manifests (multi-document YAML, a List, or one object); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "config-map",
        str,
        "",
        "The pod-identity-webhook ConfigMap manifest (needs --watch-config-map)",
    ),
    FlagSpec("namespace", str, "eks", "Namespace the webhook reads its ConfigMap from"),
    *MUTATION_FLAGS,
    *EXTENSION_FLAGS,
    FlagSpec(
        "fail-on-deny",
        parse_go_bool,
        False,
        "Exit with status 3 when the policy or a rule denies the Pod",
        "bool",
    ),
    FlagSpec(
        "output", _output, "pod", "Output: pod (YAML), patch (JSON Patch) or review", shorthand="o"
    ),
    FlagSpec(
        "verbose", parse_go_bool, False, "Explain each decision on stderr", "bool", shorthand="v"
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

MUTATE_USAGE = f"""Usage: {PROG} mutate -f FILE [--service-accounts FILE]...
       [--config-map FILE --watch-config-map] [--watch-container-credentials-config FILE]
       [mutation flags] [-o pod|patch|review] [-v]

Shows offline what the webhook would do to a Pod. Exit status 0 whether or not it changes.

Flags:
"""


def _load_pod_or_review(text: str, where: str) -> tuple[AdmissionRequest, bool]:
    documents = [d for d in load_documents(text, where) if d is not None]
    if len(documents) != 1:
        raise InputError(
            f"{where}: expected one Pod or AdmissionReview, found {len(documents)} documents"
        )
    document = documents[0]
    if isinstance(document, dict) and document.get("kind") == "AdmissionReview":
        try:
            return parse_review(document), True
        except BadReview as exc:
            raise InputError(f"{where}: {exc}") from None
    if not isinstance(document, dict) or document.get("kind", "Pod") != "Pod":
        kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise InputError(f"{where}: expected a Pod or an AdmissionReview, found {kind!r}")
    metadata = document.get("metadata") or {}
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    request = AdmissionRequest(
        uid=OFFLINE_UID,
        namespace=namespace if isinstance(namespace, str) and namespace else "default",
        pod=document,
        kind="AdmissionReview",
        api_version="admission.k8s.io/v1",
    )
    return request, False


def _explain(decision: Decision, sources: StaticSources, err: TextIO) -> None:
    for note in sources.notes:
        print(f"note[{note.code}]: {note.message}", file=err)
    verdict = "mutated" if decision.mutated else "not mutated"
    print(
        f"decision: {verdict} ({decision.reason}) for ServiceAccount {decision.service_account}",
        file=err,
    )
    if decision.method:
        print(f"method: {decision.method}", file=err)
    if decision.role_source:
        role = f" {decision.role_arn}" if decision.role_arn else ""
        print(f"role:{role} from {decision.role_source}", file=err)
    for note in decision.notes:
        print(f"note[{note.code}]: {note.message}", file=err)
    print(f"patch: {len(decision.patch)} operation(s)", file=err)


def _compose_settings(config: MutationConfig) -> MutationConfig:
    if not config.compose_role_arn:
        return config
    account, partition = account_and_partition()
    return dataclasses.replace(config, account_id=account, partition=partition)


def mutate(
    argv: Sequence[str],
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    jitter: Jitter = random_jitter,
) -> int:
    """The offline `mutate` command; returns the exit status."""
    try:
        parsed = parse_args(argv, MUTATE_FLAGS)
    except FlagError as exc:
        print(f"{PROG} mutate: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(MUTATE_USAGE + usage(MUTATE_FLAGS), file=stdout)
        return 0
    if parsed.positional:
        print(f"{PROG} mutate: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    if not values["filename"]:
        print(f"{PROG} mutate: -f FILE is required (- reads stdin)", file=stderr)
        return 2
    if values["config-map"] and not values["watch-config-map"]:
        print(f"{PROG} mutate: --config-map is only read with --watch-config-map", file=stderr)
        return 2
    try:
        config = _compose_settings(mutation_config(values))
        sources = StaticSources()
        for path in values["service-accounts"]:
            sources.add_service_accounts(load_documents(read_text(path, stdin), path), config)
        if values["config-map"]:
            documents = [
                d
                for d in load_documents(
                    read_text(values["config-map"], stdin), values["config-map"]
                )
                if d is not None
            ]
            if len(documents) != 1:
                raise InputError(f"{values['config-map']}: expected one ConfigMap")
            sources.set_config_map(documents[0], namespace=values["namespace"], config=config)
        cc_path = values["watch-container-credentials-config"]
        if cc_path:
            sources.set_container_credentials(read_text(cc_path, stdin))
        request, from_review = _load_pod_or_review(
            read_text(values["filename"], stdin), values["filename"]
        )
        decision = decide(
            request.pod,
            namespace=request.namespace,
            sources=sources,
            config=config,
            jitter=jitter,
            # The API server's ServiceAccount admission plugin fills this in before webhooks run.
            default_service_account="" if from_review else "default",
        )
        extensions = load_extensions(
            values["policy"],
            values["rule"],
            rule_timeout=values["rule-timeout"],
            failure_policy=values["rule-failure-policy"],
        )
        extras = Extras()
        if extensions.active:
            name = decision.service_account.partition("/")[2]
            entry = sources.service_account(request.namespace, name)
            extras = asyncio.run(
                extend(
                    request.pod,
                    request.namespace,
                    decision,
                    extensions,
                    annotations=entry.annotations if entry else {},
                    config=config,
                )
            )
    except (WebhookError, ConfigError) as exc:
        print(f"{PROG} mutate: {exc}", file=stderr)
        return 1
    if values["verbose"]:
        _explain(decision, sources, stderr)
    else:
        for note in sources.notes:
            print(f"{PROG} mutate: warning: {note.message}", file=stderr)
    for name, error in extras.rule_errors:
        print(f"{PROG} mutate: rule {name} failed: {error}", file=stderr)
    for warning in extras.warnings:
        print(f"{PROG} mutate: warning: {warning}", file=stderr)
    ops = [] if extras.denial else [*decision.patch, *extras.patch]
    output = values["output"]
    if output == "patch":
        print(json.dumps(ops, indent=2), file=stdout)
    elif output == "review":
        print(json.dumps(respond(request, decision, extras), indent=2), file=stdout)
    else:
        mutated = jsonpatch.apply_patch(request.pod, ops)
        text = yaml.safe_dump(mutated, sort_keys=False, default_flow_style=False)
        print(text, end="", file=stdout)
    if extras.denial:
        print(f"{PROG} mutate: denied: {extras.denial}", file=stderr)
        if values["fail-on-deny"]:
            return 3
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency on Linux): measured +7% admissions/s."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return None
    return uvloop.new_event_loop


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
    logs.configure(fmt=config.log_format, verbosity=config.verbosity, stream=stdout)
    if config.ignored_flags:
        structlog.get_logger("webhook").info(
            "klog_flags_accepted", flags=list(config.ignored_flags), note="accepted, not used"
        )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(serve(config))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: cannot serve: {exc}", file=stderr)
        return 1


def run(
    argv: Sequence[str],
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
    jitter: Jitter = random_jitter,
) -> int:
    """Dispatch a command line; returns the exit status."""
    args = list(argv)
    command = args[0] if args else ""
    if command == "mutate":
        return mutate(args[1:], stdin=stdin, stdout=stdout, stderr=stderr, jitter=jitter)
    if command == "certs":
        return certs_command(args[1:], stdout=stdout, stderr=stderr)
    if command == "oidc":
        return oidc_command(args[1:], stdout=stdout, stderr=stderr)
    if command == "trust-policy":
        return trust_policy_command(args[1:], stdout=stdout, stderr=stderr)
    if command in ("broker", "agent"):  # EKS Pod Identity (webhook/podidentity_commands.py)
        from webhook.podidentity_commands import agent_command, broker_command

        dispatch = broker_command if command == "broker" else agent_command
        return dispatch(args[1:], stdout=stdout, stderr=stderr)
    if command == "serve":
        args = args[1:]
    return serve_command(args, stdout=stdout, stderr=stderr)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))
