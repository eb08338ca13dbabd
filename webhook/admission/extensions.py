"""The role policy and the extension rules applied to a built-in decision.

Shared by the server and the offline `mutate` command: both get the same verdicts, the same
rule additions and the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch

from webhook.admission.mutation import Decision
from webhook.admission.policy import Policy, Violation, evaluate, parse_policy
from webhook.admission.rules import (
    FailurePolicy,
    LoadedRule,
    load_rule,
    make_request,
    rule_patch,
    run_rules,
)
from webhook.admission.wire import PatchOp
from webhook.config import MutationConfig
from webhook.errors import ConfigError, PolicyError

__all__ = ["Extensions", "Extras", "extend", "load_extensions"]


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the operator configured: --policy, --rule and how rules may fail."""

    policy: Policy | None = None
    rules: tuple[LoadedRule, ...] = ()
    rule_timeout: float = 0.25
    failure_policy: FailurePolicy = "ignore"

    @property
    def active(self) -> bool:
        return self.policy is not None or bool(self.rules)


@dataclass(frozen=True, slots=True)
class Extras:
    """What the extensions add to the answer."""

    patch: tuple[PatchOp, ...] = ()
    warnings: tuple[str, ...] = ()
    denial: str | None = None
    violations: tuple[Violation, ...] = ()
    rule_errors: tuple[tuple[str, str], ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)


async def extend(
    pod: Mapping[str, Any], decision: Decision, extensions: Extensions, *, config: MutationConfig
) -> Extras:
    """Judge the decision against the policy, then run the rules on the mutated Pod."""
    warnings: list[str] = []
    denials: list[str] = []
    audit: dict[str, str] = {}
    violations: tuple[Violation, ...] = ()
    if extensions.policy is not None:
        judgement = evaluate(extensions.policy, decision.namespace, decision)
        violations = judgement.violations
        if judgement.denial:
            denials.append(judgement.denial)
        warnings.extend(f"pod-identity-webhook: {v.message}" for v in judgement.audited)
        if violations:
            audit["policy-violations"] = ",".join(sorted({v.rule for v in violations}))
    patch: list[PatchOp] = []
    errors: list[tuple[str, str]] = []
    if extensions.rules and not denials:
        mutated = jsonpatch.apply_patch(dict(pod), list(decision.patch))
        request = make_request(mutated, decision, config)
        outcomes = await run_rules(extensions.rules, request, seconds=extensions.rule_timeout)
        results = []
        for outcome in outcomes:
            if outcome.error is not None:
                errors.append((outcome.name, outcome.error))
                if extensions.failure_policy == "deny":
                    denials.append(f"rule {outcome.name} failed ({outcome.error})")
                continue
            if outcome.result is None:
                continue
            if outcome.result.deny:
                denials.append(f"rule {outcome.name}: {outcome.result.deny}")
            warnings.extend(f"{outcome.name}: {w}" for w in outcome.result.warnings)
            results.append(outcome.result)
        patch, refused = rule_patch(mutated, decision, results)
        warnings.extend(f"pod-identity-webhook: {r}" for r in dict.fromkeys(refused))
        if errors:
            audit["rule-errors"] = ",".join(name for name, _ in errors)
    return Extras(
        patch=tuple(patch),
        warnings=tuple(warnings),
        denial="; ".join(denials) if denials else None,
        violations=violations,
        rule_errors=tuple(errors),
        audit=audit,
    )


def load_extensions(
    policy_file: str, rule_specs: Sequence[str], *, rule_timeout: float, failure_policy: str
) -> Extensions:
    """Read --policy and load every --rule at start-up; ConfigError names the culprit."""
    policy = None
    if policy_file:
        try:
            policy = parse_policy(Path(policy_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            raise ConfigError(f"--policy {policy_file}: {exc}") from None
    return Extensions(
        policy=policy,
        rules=tuple(load_rule(spec) for spec in rule_specs),
        rule_timeout=rule_timeout,
        failure_policy="deny" if failure_policy == "deny" else "ignore",
    )
