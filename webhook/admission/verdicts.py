"""Pure. One verdict per admission, from the built-in decision and what the extensions added.

The metric, the log line, the audit annotation and `mutate -v` all read the same `Verdict`,
so they cannot disagree about what happened to a Pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webhook.admission.endpoints import endpoint_audit
from webhook.admission.extensions import Extras
from webhook.admission.mutation import Decision
from webhook.admission.notes import WARNED
from webhook.admission.reviews import Answer
from webhook.admission.wire import Reason

__all__ = ["Outcome", "Verdict", "answer", "verdict", "warnings_for"]

Outcome = Literal["mutated", "not_mutated", "denied"]

_WARNING_LIMIT = 120  # kubectl shows them whole up to about this length
_NO_EXTRAS = Extras()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to the Pod, and the one-word reason."""

    outcome: Outcome
    reason: Reason | Literal["policy", "rule"]

    @property
    def audit_decision(self) -> str:
        """The audit annotation's spelling (`not-mutated`, as it has always been)."""
        return self.outcome.replace("_", "-")


def verdict(decision: Decision, extras: Extras | None = None) -> Verdict:
    extras = extras or _NO_EXTRAS
    if extras.denial:
        return Verdict("denied", "policy" if extras.violations else "rule")
    mutated = decision.mutated or bool(extras.patch)
    return Verdict("mutated" if mutated else "not_mutated", decision.reason)


def warnings_for(decision: Decision) -> list[str]:
    """Short sentences for kubectl; one per explained note, in order, without repeats."""
    seen: list[str] = []
    for note in decision.notes:
        if note.code not in WARNED:
            continue
        text = f"pod-identity-webhook: {note.message}"
        if len(text) > _WARNING_LIMIT:
            text = text[: _WARNING_LIMIT - 3] + "..."
        if text not in seen:
            seen.append(text)
    return seen


def _audit(decision: Decision, judged: Verdict) -> dict[str, str]:
    annotations = {
        "decision": judged.audit_decision,
        "reason": decision.reason,
        "service-account": decision.service_account,
    }
    annotations.update(endpoint_audit(decision.endpoints))
    if decision.method:
        annotations["method"] = decision.method
    if decision.role_source:
        annotations["role-source"] = decision.role_source
    if decision.role_arn:
        annotations["role-arn"] = decision.role_arn
    return annotations


def answer(decision: Decision, extras: Extras | None = None) -> Answer:
    """The response for the Pod: the patch (none when denied), warnings and audit record."""
    extras = extras or _NO_EXTRAS
    judged = verdict(decision, extras)
    return Answer(
        ops=() if extras.denial else (*decision.patch, *extras.patch),
        warnings=(*warnings_for(decision), *extras.warnings),
        audit={**_audit(decision, judged), **extras.audit},
        denial=extras.denial,
    )
