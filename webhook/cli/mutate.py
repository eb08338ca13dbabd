"""The offline `mutate` command: what the webhook would do to a Pod, without a cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TextIO, cast

import jsonpatch
import yaml

from webhook.admission.extensions import Extras, extend, load_extensions
from webhook.admission.mutation import Decision, Jitter, decide, random_jitter
from webhook.admission.reviews import AdmissionRequest, Answer, parse_review, respond
from webhook.admission.verdicts import answer, verdict
from webhook.admission.wire import PatchOp, Pod
from webhook.cli.common import PROG, fail, parse_command, warn
from webhook.config import (
    EXTENSION_FLAGS,
    MUTATION_FLAGS,
    MutationConfig,
    mutation_config,
    mutation_notices,
)
from webhook.errors import BadReview, InputError, WebhookError
from webhook.flags import FlagSpec
from webhook.gocompat import parse_go_bool
from webhook.imds import account_and_partition
from webhook.sources.manifests import StaticSources, load_documents, read_text

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
        pod=cast("Pod", document),
        kind="AdmissionReview",
        api_version="admission.k8s.io/v1",
    )
    return request, False


def _explain(
    decision: Decision, extras: Extras, ops: Sequence[PatchOp], sources: StaticSources, err: TextIO
) -> None:
    """What `-v` prints: the same verdict the server would log and count for this Pod."""
    for note in sources.notes:
        print(f"note[{note.code}]: {note.message}", file=err)
    judged = verdict(decision, extras)
    print(
        f"decision: {judged.outcome.replace('_', ' ')} ({judged.reason}) "
        f"for ServiceAccount {decision.service_account}",
        file=err,
    )
    if decision.method:
        print(f"method: {decision.method}", file=err)
    if decision.role_source:
        role = f" {decision.role_arn}" if decision.role_arn else ""
        print(f"role:{role} from {decision.role_source}", file=err)
    for container, own in decision.container_roles:
        print(f"role: {own} for container {container} from its container-role-arn", file=err)
    if decision.session_name is not None:
        print(f"session name: {decision.session_name}", file=err)
    for note in decision.notes:
        print(f"note[{note.code}]: {note.message}", file=err)
    print(f"patch: {len(ops)} operation(s)", file=err)


def _compose_settings(config: MutationConfig) -> MutationConfig:
    if not config.compose_role_arn:
        return config
    account, partition = account_and_partition()
    return dataclasses.replace(config, account_id=account, partition=partition)


def _sources(values: dict[str, Any], config: MutationConfig, stdin: TextIO) -> StaticSources:
    """The cluster as the files describe it: ServiceAccounts, ConfigMap, identities."""
    sources = StaticSources()
    for path in values["service-accounts"]:
        sources.add_service_accounts(load_documents(read_text(path, stdin), path), config)
    path = values["config-map"]
    if path:
        documents = [d for d in load_documents(read_text(path, stdin), path) if d is not None]
        if len(documents) != 1:
            raise InputError(f"{path}: expected one ConfigMap")
        sources.set_config_map(documents[0], namespace=values["namespace"], config=config)
    path = values["watch-container-credentials-config"]
    if path:
        sources.set_container_credentials(read_text(path, stdin))
    return sources


def _report(
    decision: Decision,
    extras: Extras,
    reply: Answer,
    sources: StaticSources,
    *,
    verbose: bool,
    stderr: TextIO,
) -> None:
    """stderr: the explanation with -v, else the loading problems; then what rules said."""
    if verbose:
        _explain(decision, extras, reply.ops, sources, stderr)
    else:
        for note in sources.notes:
            warn(stderr, "mutate", note.message)
    for name, error in extras.rule_errors:
        fail(stderr, "mutate", f"rule {name} failed: {error}")
    for warning in extras.warnings:
        warn(stderr, "mutate", warning)


def _print(output: str, request: AdmissionRequest, reply: Answer, stdout: TextIO) -> None:
    if output == "patch":
        print(json.dumps(list(reply.ops), indent=2), file=stdout)
    elif output == "review":
        print(json.dumps(respond(request, reply), indent=2), file=stdout)
    else:
        mutated = jsonpatch.apply_patch(request.pod, list(reply.ops))
        text = yaml.safe_dump(mutated, sort_keys=False, default_flow_style=False)
        print(text, end="", file=stdout)


def mutate(
    argv: Sequence[str],
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    jitter: Jitter = random_jitter,
) -> int:
    """The offline `mutate` command; returns the exit status."""
    parsed = parse_command("mutate", argv, MUTATE_FLAGS, MUTATE_USAGE, stdout=stdout, stderr=stderr)
    if isinstance(parsed, int):
        return parsed
    values = parsed.values
    if not values["filename"]:
        return fail(stderr, "mutate", "-f FILE is required (- reads stdin)", 2)
    if values["config-map"] and not values["watch-config-map"]:
        return fail(stderr, "mutate", "--config-map is only read with --watch-config-map", 2)
    for notice in mutation_notices(values):
        warn(stderr, "mutate", notice.message)
    try:
        config = _compose_settings(mutation_config(values))
        sources = _sources(values, config, stdin)
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
            extras = asyncio.run(extend(request.pod, decision, extensions, config=config))
    except WebhookError as exc:
        return fail(stderr, "mutate", str(exc))
    reply = answer(decision, extras)
    _report(decision, extras, reply, sources, verbose=values["verbose"], stderr=stderr)
    _print(values["output"], request, reply, stdout)
    if reply.denial:
        fail(stderr, "mutate", f"denied: {reply.denial}")
        if values["fail-on-deny"]:
            return 3
    return 0
