"""The offline `mutate` command: what the webhook would do to the Pods of manifests, without a
cluster. A file holds Pods, workloads (their Pod templates), Lists of them, other objects
(passed through) or an AdmissionReview; the output keeps each document's shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jsonpatch
import yaml

from webhook.admission.extensions import Extensions, Extras, extend, load_extensions
from webhook.admission.mutation import Decision, Jitter, decide, random_jitter
from webhook.admission.reviews import AdmissionRequest, Answer, parse_review, respond
from webhook.admission.verdicts import answer, verdict
from webhook.admission.wire import PatchOp
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
from webhook.sources.workloads import Template, pod_templates

OFFLINE_UID = "00000000-0000-0000-0000-000000000000"


def _output(text: str) -> str:
    if text not in ("pod", "patch", "review"):
        raise ValueError("must be pod, patch or review")
    return text


MUTATE_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "filename",
        str,
        None,
        "Manifests (YAML or JSON, multi-document, Lists): Pods, Deployments, StatefulSets, "
        "DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs, or an AdmissionReview; "
        "a directory for every .yaml, .yml and .json below it; - for stdin; repeatable",
        "stringArray",
        shorthand="f",
        repeatable=True,
    ),
    FlagSpec(
        "service-accounts",
        str,
        None,
        "ServiceAccount manifests (multi-document YAML, a List, or one object; other kinds are "
        "skipped), or a directory of them; repeatable",
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
        "Exit with status 3 when the policy or a rule denies any Pod",
        "bool",
    ),
    FlagSpec(
        "output",
        _output,
        "pod",
        "Output: pod (the documents as YAML, Pods mutated), patch (a JSON Patch per document) "
        "or review (an AdmissionReview response per Pod)",
        shorthand="o",
    ),
    FlagSpec(
        "verbose", parse_go_bool, False, "Explain each decision on stderr", "bool", shorthand="v"
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

MUTATE_USAGE = f"""Usage: {PROG} mutate -f FILE|DIR|- [-f ...] [--service-accounts FILE]...
       [--config-map FILE --watch-config-map] [--watch-container-credentials-config FILE]
       [mutation flags] [--policy FILE] [--fail-on-deny] [-o pod|patch|review] [-v]

Shows offline what the webhook would do to the Pods of manifests: Pods, and the Pod templates of
Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs
(in multi-document files and Lists), each admitted in its object's namespace as the API server
would admit the Pod. Other objects are passed through unchanged. Exit status 0 whether or not
anything changes, 3 with --fail-on-deny when any Pod is denied, 1 for a file that cannot be
read, 2 for a bad command line.

Flags:
"""

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """A Pod to admit: where it is in its document, and the request the server would get."""

    template: Template | None
    """None for an AdmissionReview, whose Pod is the review's object."""
    request: AdmissionRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission(Found):
    """What came of admitting one Pod offline."""

    decision: Decision
    extras: Extras
    reply: Answer

    def ops(self) -> list[PatchOp]:
        """The Pod's patch, moved under the template's place in its document."""
        prefix = self.template.pointer if self.template is not None else ""
        return [{**op, "path": prefix + op["path"]} for op in self.reply.ops]

    @property
    def label(self) -> str:
        if self.template is not None:
            return self.template.label
        return f"AdmissionReview {self.request.namespace}/{self.request.pod_name}"


@dataclass(slots=True, kw_only=True)
class Document:
    """One YAML document of an input, and the Pods admitted from it."""

    source: str
    index: int
    """1-based, counting every document of the file."""
    body: Any
    review: bool = False
    found: list[Found] = field(default_factory=list)
    admissions: list[Admission] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.source}, document {self.index}"

    def output(self) -> Any:
        """The document as `-o pod` prints it: the review's Pod, or the document itself, with
        the patches of its Pods applied."""
        if self.review:
            (admission,) = self.admissions
            return jsonpatch.apply_patch(admission.request.pod, admission.ops())
        ops = self.ops()
        return jsonpatch.apply_patch(self.body, ops) if ops else self.body

    def ops(self) -> list[PatchOp]:
        """`-o patch`: the patches of its Pods, paths relative to the document (a review's
        is the Pod's, as the server would send it)."""
        return [op for admission in self.admissions for op in admission.ops()]


def _inputs(paths: Sequence[str]) -> Iterator[str]:
    """The files named: a directory stands for its manifests, in a stable order."""
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found = sorted(
                str(p)
                for p in Path(path).rglob("*")
                if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not found:
                raise InputError(f"{path}: no .yaml, .yml or .json file in this directory")
            yield from found
        else:
            yield path


def _document(source: str, index: int, body: Any, *, lone: bool) -> Document:
    """The document with the Pods it holds; InputError names a malformed one."""
    document = Document(source=source, index=index, body=body)
    try:
        if isinstance(body, dict) and body.get("kind") == "AdmissionReview":
            document.review = True
            document.found.append(Found(template=None, request=parse_review(body)))
            return document
        templates, document.warnings = pod_templates(body, kindless_pod=lone)
    except BadReview as exc:
        raise InputError(f"{document.where}: {exc}") from None
    for template in templates:
        request = AdmissionRequest(
            uid=OFFLINE_UID,
            namespace=template.namespace,
            pod=template.pod,
            kind="AdmissionReview",
            api_version="admission.k8s.io/v1",
        )
        document.found.append(Found(template=template, request=request))
    return document


def _read(paths: Sequence[str], stdin: TextIO) -> list[Document]:
    """Every non-empty document of the inputs. A lone one without `kind` is taken for a Pod
    (a hand-written snippet); among others it is only passed through."""
    if list(paths).count("-") > 1:
        raise InputError("-f - (stdin) can be given only once")
    bodies = [
        (source, index, body)
        for source in _inputs(paths)
        for index, body in enumerate(load_documents(read_text(source, stdin), source), 1)
        if body is not None
    ]
    if not bodies:
        raise InputError(f"{', '.join(paths)}: no Kubernetes object found")
    lone = len(bodies) == 1
    return [_document(source, index, body, lone=lone) for source, index, body in bodies]


def _decide(document: Document, found: Found, context: Context) -> Decision:
    template = found.template
    try:
        return decide(
            found.request.pod,
            namespace=found.request.namespace,
            sources=context.sources,
            config=context.config,
            jitter=context.jitter,
            # The API server's ServiceAccount admission plugin names it before webhooks run;
            # a review has been through it already.
            default_service_account=template.default_service_account if template else "",
        )
    except BadReview as exc:
        label = ""
        if template is not None:
            label = f"{template.label}: "
            label += f"{template.path}: " if template.path else ""
        raise InputError(f"{document.where}: {label}{exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What every admission of one run shares."""

    sources: StaticSources
    config: MutationConfig
    extensions: Extensions
    jitter: Jitter


async def _admit(documents: list[Document], context: Context) -> None:
    """Decide every Pod, then run the policy and rules on it, as the server would."""
    for document in documents:
        for found in document.found:
            decision = _decide(document, found, context)
            extras = Extras()
            if context.extensions.active:
                extras = await extend(
                    found.request.pod, decision, context.extensions, config=context.config
                )
            document.admissions.append(
                Admission(
                    template=found.template,
                    request=found.request,
                    decision=decision,
                    extras=extras,
                    reply=answer(decision, extras),
                )
            )


def _explain(admission: Admission, err: TextIO) -> None:
    """What `-v` prints: the same verdict the server would log and count for this Pod."""
    decision, extras = admission.decision, admission.extras
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
    print(f"patch: {len(admission.reply.ops)} operation(s)", file=err)


def _compose_settings(config: MutationConfig) -> MutationConfig:
    if not config.compose_role_arn:
        return config
    account, partition = account_and_partition()
    return dataclasses.replace(config, account_id=account, partition=partition)


def _sources(values: dict[str, Any], config: MutationConfig, stdin: TextIO) -> StaticSources:
    """The cluster as the files describe it: ServiceAccounts, ConfigMap, identities."""
    sources = StaticSources()
    for path in _inputs(values["service-accounts"]):
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


def _single(documents: Sequence[Document]) -> bool:
    """One document holding one bare Pod or review: messages need not say which."""
    if len(documents) != 1 or len(documents[0].admissions) != 1:
        return False
    template = documents[0].admissions[0].template
    return template is None or not template.pointer


def _report(
    documents: Sequence[Document], sources: StaticSources, *, verbose: bool, stderr: TextIO
) -> list[str]:
    """stderr: loading problems, then per Pod the explanation (-v) and what rules said;
    returns the denials, each naming its Pod unless there is only one."""
    for note in sources.notes:
        if verbose:
            print(f"note[{note.code}]: {note.message}", file=stderr)
        elif note.code != "object-ignored":  # the other objects of a repository's manifests
            warn(stderr, "mutate", note.message)
    single = _single(documents)
    denials = []
    for document in documents:
        for text in document.warnings:
            warn(stderr, "mutate", f"{document.where}: {text}")
        if verbose and not document.admissions and not single:
            print(f"== {document.where}: no Pod; unchanged", file=stderr)
        for admission in document.admissions:
            label = "" if single else f"{document.where}: {admission.label}"
            denial = _report_admission(admission, label, verbose=verbose, stderr=stderr)
            if denial:
                denials.append(denial)
    return denials


def _report_admission(
    admission: Admission, label: str, *, verbose: bool, stderr: TextIO
) -> str | None:
    """One Pod's explanation (-v), rule errors and warnings; its denial, if any."""
    prefix = f"{label}: " if label else ""
    if verbose:
        if label:
            print(f"== {label}", file=stderr)
        _explain(admission, stderr)
    for name, error in admission.extras.rule_errors:
        fail(stderr, "mutate", f"{prefix}rule {name} failed: {error}")
    for text in admission.extras.warnings:
        warn(stderr, "mutate", f"{prefix}{text}")
    denial = admission.reply.denial
    return f"{prefix}{denial}" if denial else None


def _print(output: str, documents: Sequence[Document], stdout: TextIO) -> None:
    if output == "patch":
        texts = [json.dumps(document.ops(), indent=2) for document in documents]
        print("\n".join(texts), file=stdout)
    elif output == "review":
        texts = [
            json.dumps(respond(admission.request, admission.reply), indent=2)
            for document in documents
            for admission in document.admissions
        ]
        if texts:
            print("\n".join(texts), file=stdout)
    else:
        bodies = [document.output() for document in documents]
        text = yaml.safe_dump_all(bodies, sort_keys=False, default_flow_style=False)
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
    if not values["filename"] or not all(values["filename"]):
        return fail(stderr, "mutate", "-f FILE is required (- reads stdin)", 2)
    if values["config-map"] and not values["watch-config-map"]:
        return fail(stderr, "mutate", "--config-map is only read with --watch-config-map", 2)
    for notice in mutation_notices(values):
        warn(stderr, "mutate", notice.message)
    try:
        config = _compose_settings(mutation_config(values))
        sources = _sources(values, config, stdin)
        extensions = load_extensions(
            values["policy"],
            values["rule"],
            rule_timeout=values["rule-timeout"],
            failure_policy=values["rule-failure-policy"],
        )
        documents = _read(values["filename"], stdin)
        context = Context(sources=sources, config=config, extensions=extensions, jitter=jitter)
        asyncio.run(_admit(documents, context))
    except WebhookError as exc:
        return fail(stderr, "mutate", str(exc))
    denials = _report(documents, sources, verbose=values["verbose"], stderr=stderr)
    _print(values["output"], documents, stdout)
    for denial in denials:
        fail(stderr, "mutate", f"denied: {denial}")
    return 3 if denials and values["fail-on-deny"] else 0
