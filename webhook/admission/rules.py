"""Extension rules: organisation-specific injection written in Python.

A rule is a callable (plain or async) that takes a `RuleRequest` and returns a `RuleResult`,
or None for "nothing to add". Rules are named on the command line with `--rule NAME`, where
NAME is an entry point of the group `pod_identity_webhook.rules` (installed with pip) or
`module:callable`. They run after the built-in mutation and can only add:

- `env` and `volume_mounts`: to every container that carries the credentials, when absent;
- `volumes`, Pod `labels` and `annotations`: when absent;
- `warnings` for kubectl, or `deny` with a message to reject the Pod.

Their additions go through the same add-only patch as the built-in mutation, so a rule can
never remove or change anything, including what the built-in mutation injected; the
credential, region and STS variables are reserved to it. A rule that raises or runs longer than
its timeout is logged and counted, then ignored (fail-open) or turned into a denial
(fail-closed), as `--rule-failure-policy` says.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Literal

from webhook.admission.endpoints import ENDPOINT_VARS
from webhook.admission.mutation import Decision
from webhook.admission.patches import (
    CONTAINER_CREDENTIALS_VARS,
    REGION_VARS,
    ROLE_ARN_VARS,
    STS_VAR,
    escape_pointer,
)
from webhook.admission.wire import PatchOp
from webhook.config import MutationConfig
from webhook.errors import ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedRule",
    "RuleOutcome",
    "RuleRequest",
    "RuleResult",
    "load_rule",
    "rule_patch",
    "run_rules",
]

ENTRY_POINT_GROUP = "pod_identity_webhook.rules"
RESERVED_VARIABLES = frozenset(
    {*ROLE_ARN_VARS, *CONTAINER_CREDENTIALS_VARS, *REGION_VARS, STS_VAR, *ENDPOINT_VARS}
)
FailurePolicy = Literal["ignore", "deny"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleRequest:
    """What a rule may look at. `pod` is a private copy: changing it changes nothing."""

    pod: Mapping[str, Any]
    """The Pod after the built-in mutation."""
    namespace: str
    service_account: str
    service_account_annotations: Mapping[str, str]
    """The ServiceAccount's annotations under the annotation prefix."""
    decision: Decision
    config: MutationConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    """What a rule adds; every field is optional."""

    env: Sequence[Mapping[str, Any]] = ()
    volume_mounts: Sequence[Mapping[str, Any]] = ()
    volumes: Sequence[Mapping[str, Any]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    warnings: Sequence[str] = ()
    deny: str | None = None


Rule = Callable[[RuleRequest], "RuleResult | Awaitable[RuleResult | None] | None"]


@dataclass(frozen=True, slots=True)
class LoadedRule:
    name: str
    function: Rule


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    name: str
    result: RuleResult | None
    error: str | None = None


def load_rule(spec: str) -> LoadedRule:
    """A rule from an entry-point name or `module:callable`; ConfigError if it cannot load."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--rule {spec}: cannot load it: {exc}") from None
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not found:
            known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            listing = ", ".join(known) or "none installed"
            raise ConfigError(f"--rule {spec}: no such rule (installed: {listing})")
        try:
            target = found[0].load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure of a plug-in
            raise ConfigError(f"--rule {spec}: cannot load it: {exc}") from None
    if not callable(target):
        raise ConfigError(f"--rule {spec}: {target!r} is not callable")
    return LoadedRule(spec, target)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def make_request(pod: Mapping[str, Any], decision: Decision, config: MutationConfig) -> RuleRequest:
    annotations = decision.entry.annotations if decision.entry is not None else {}
    return RuleRequest(
        pod=_frozen(copy.deepcopy(dict(pod))),
        namespace=decision.namespace,
        service_account=decision.name,
        service_account_annotations=MappingProxyType(dict(annotations)),
        decision=decision,
        config=config,
    )


async def _call(rule: LoadedRule, request: RuleRequest, seconds: float) -> RuleResult | None:
    if inspect.iscoroutinefunction(rule.function):
        answer = await asyncio.wait_for(rule.function(request), seconds)
    else:
        # A plain function runs in a thread so the timeout holds; a hung one keeps its thread.
        answer = await asyncio.wait_for(asyncio.to_thread(rule.function, request), seconds)
    if answer is not None and not isinstance(answer, RuleResult):
        raise TypeError(f"returned {type(answer).__name__}, not RuleResult or None")
    return answer


async def run_rules(
    rules: Sequence[LoadedRule], request: RuleRequest, *, seconds: float
) -> list[RuleOutcome]:
    """Every rule's outcome, in order; errors and timeouts are captured, never raised."""
    outcomes = []
    for rule in rules:
        try:
            outcomes.append(RuleOutcome(rule.name, await _call(rule, request, seconds)))
        except TimeoutError:
            outcomes.append(RuleOutcome(rule.name, None, f"timed out after {seconds:g}s"))
        except Exception as exc:  # noqa: BLE001 - a plug-in may raise anything
            outcomes.append(RuleOutcome(rule.name, None, f"{type(exc).__name__}: {exc}"))
    return outcomes


def _names(items: Any) -> set[Any]:
    return {i.get("name") for i in items or () if isinstance(i, dict)}


class _Builder:
    """What the Pod already has, so each addition is an `add` of something absent."""

    def __init__(self, pod: Mapping[str, Any], targets: Sequence[str]) -> None:
        self.pod, self.targets = pod, targets
        self.ops: list[PatchOp] = []
        self.refused: list[str] = []
        spec = pod.get("spec") or {}
        metadata = pod.get("metadata") or {}
        containers = {
            f"/spec/{f}/{i}": c
            for f in ("initContainers", "containers")
            for i, c in enumerate(spec.get(f) or [])
        }
        chosen = {t: containers[t] for t in targets}
        self.env = {t: _names(c.get("env")) for t, c in chosen.items()}
        self.mounts = {t: _names(c.get("volumeMounts")) for t, c in chosen.items()}
        self.paths = {
            t: {m.get("mountPath") for m in c.get("volumeMounts") or []} for t, c in chosen.items()
        }
        self.lists = {
            (t, f): c.get(f) is not None for t, c in chosen.items() for f in ("env", "volumeMounts")
        }
        self.volumes = _names(spec.get("volumes"))
        self.lists["/spec", "volumes"] = spec.get("volumes") is not None
        maps = {"labels": metadata.get("labels"), "annotations": metadata.get("annotations")}
        self.keys: dict[str, set[str]] = {k: set(v or {}) for k, v in maps.items()}
        self.has_map = {k: v is not None for k, v in maps.items()}

    def _append(self, base: str, field_name: str, item: Any) -> None:
        if self.lists[base, field_name]:
            self.ops.append({"op": "add", "path": f"{base}/{field_name}/-", "value": item})
        else:
            self.ops.append({"op": "add", "path": f"{base}/{field_name}", "value": [item]})
            self.lists[base, field_name] = True

    def add_env(self, var: Mapping[str, Any]) -> None:
        name = var.get("name")
        if name in RESERVED_VARIABLES:
            self.refused.append(f"{name} is set by the webhook itself; a rule cannot add it")
            return
        for target in self.targets:
            if name not in self.env[target]:
                self.env[target].add(name)
                self._append(target, "env", dict(var))

    def add_mount(self, mount: Mapping[str, Any]) -> None:
        for target in self.targets:
            if mount.get("name") in self.mounts[target]:
                continue
            if mount.get("mountPath") in self.paths[target]:
                self.refused.append(f"mount path {mount.get('mountPath')} is already used")
                continue
            self.mounts[target].add(mount.get("name"))
            self.paths[target].add(mount.get("mountPath"))
            self._append(target, "volumeMounts", dict(mount))

    def add_volume(self, volume: Mapping[str, Any]) -> None:
        if volume.get("name") not in self.volumes:
            self.volumes.add(volume.get("name"))
            self._append("/spec", "volumes", dict(volume))

    def add_metadata(self, kind: str, key: str, value: str) -> None:
        if key in self.keys[kind]:
            return
        self.keys[kind].add(key)
        if self.pod.get("metadata") is None and not any(o["path"] == "/metadata" for o in self.ops):
            self.ops.append({"op": "add", "path": "/metadata", "value": {}})
        if self.has_map[kind]:
            path = f"/metadata/{kind}/{escape_pointer(key)}"
            self.ops.append({"op": "add", "path": path, "value": value})
        else:
            self.ops.append({"op": "add", "path": f"/metadata/{kind}", "value": {key: value}})
            self.has_map[kind] = True


def rule_patch(
    pod: Mapping[str, Any], decision: Decision, results: Sequence[RuleResult]
) -> tuple[list[PatchOp], list[str]]:
    """Add-only operations for the rules' additions to `pod` (the Pod after the built-in
    patch), and notes on what was refused. Variables and mounts go to the containers that got
    the credentials."""
    builder = _Builder(pod, decision.targets)
    for result in results:
        for var in result.env:
            builder.add_env(var)
        for mount in result.volume_mounts:
            builder.add_mount(mount)
        for volume in result.volumes:
            builder.add_volume(volume)
        for kind, values in (("labels", result.labels), ("annotations", result.annotations)):
            for key, value in values.items():
                builder.add_metadata(kind, key, value)
    return builder.ops, builder.refused
