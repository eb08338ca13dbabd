"""The role policy and the extension rules applied to a built-in decision.

Shared by the server and the offline `mutate` command: both get the same verdicts, the same
rule additions and the same messages. The policy and rule machinery (and the YAML, patch and
entry-point libraries under it) is imported only when a policy or a rule is configured: a
webhook without them does not load it (tests/cli/test_imports.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.errors import ConfigError, PolicyError

if TYPE_CHECKING:
    from webhook.admission.mutation import Decision
    from webhook.admission.policy import Policy, Violation
    from webhook.admission.rules import FailurePolicy, LoadedRule
    from webhook.admission.wire import PatchOp
    from webhook.config import MutationConfig

__all__ = ["Extensions", "Extras", "extend", "load_extensions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Extensions:
    """What the operator configured: --policy, --rule and how rules may fail."""

    policy: Policy | None = None
    rules: tuple[LoadedRule, ...] = ()
    rule_timeout: float = 0.25
    failure_policy: FailurePolicy = "ignore"

    @property
    def active(self) -> bool:
        return self.policy is not None or bool(self.rules)


@dataclass(frozen=True, slots=True, kw_only=True)
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
    """Judge the decision against the policy, then run the rules on the mutated Pod (not when
    the policy already denies it)."""
    judged = _judge(extensions.policy, decision) if extensions.policy is not None else Extras()
    if not extensions.rules or judged.denial:
        return judged
    ruled = await _run(extensions, pod, decision, config)
    return dataclasses.replace(
        ruled,
        warnings=(*judged.warnings, *ruled.warnings),
        violations=judged.violations,
        audit={**judged.audit, **ruled.audit},
    )


def _judge(policy: Policy, decision: Decision) -> Extras:
    from webhook.admission.policy import evaluate

    judgement = evaluate(policy, decision.namespace, decision)
    violations = judgement.violations
    audit = {"policy-violations": ",".join(sorted({v.rule for v in violations}))}
    return Extras(
        warnings=tuple(f"pod-identity-webhook: {v.message}" for v in judgement.audited),
        denial=judgement.denial,
        violations=violations,
        audit=audit if violations else {},
    )


async def _run(
    extensions: Extensions, pod: Mapping[str, Any], decision: Decision, config: MutationConfig
) -> Extras:
    import jsonpatch

    from webhook.admission.rules import make_request, rule_patch, run_rules

    mutated = jsonpatch.apply_patch(dict(pod), list(decision.patch))
    request = make_request(mutated, decision, config)
    outcomes = await run_rules(extensions.rules, request, seconds=extensions.rule_timeout)
    warnings: list[str] = []
    denials: list[str] = []
    errors = [(o.name, o.error) for o in outcomes if o.error is not None]
    if extensions.failure_policy == "deny":
        denials += [f"rule {name} failed ({error})" for name, error in errors]
    results = [(o.name, o.result) for o in outcomes if o.result is not None]
    for name, result in results:
        if result.deny:
            denials.append(f"rule {name}: {result.deny}")
        warnings.extend(f"{name}: {w}" for w in result.warnings)
    patch, refused = rule_patch(mutated, decision, [result for _, result in results])
    warnings.extend(f"pod-identity-webhook: {r}" for r in dict.fromkeys(refused))
    return Extras(
        patch=tuple(patch),
        warnings=tuple(warnings),
        denial="; ".join(denials) if denials else None,
        rule_errors=tuple(errors),
        audit={"rule-errors": ",".join(name for name, _ in errors)} if errors else {},
    )


def load_extensions(
    policy_file: str, rule_specs: Sequence[str], *, rule_timeout: float, failure_policy: str
) -> Extensions:
    """Read --policy and load every --rule at start-up; ConfigError names the culprit."""
    policy = None
    if policy_file:
        from webhook.admission.policy import parse_policy

        try:
            policy = parse_policy(Path(policy_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            raise ConfigError(f"--policy {policy_file}: {exc}") from None
    rules: tuple[LoadedRule, ...] = ()
    if rule_specs:
        from webhook.admission.rules import load_rule

        rules = tuple(load_rule(spec) for spec in rule_specs)
    return Extensions(
        policy=policy,
        rules=rules,
        rule_timeout=rule_timeout,
        failure_policy="deny" if failure_policy == "deny" else "ignore",
    )
