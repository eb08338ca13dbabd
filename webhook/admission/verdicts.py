"""Pure. One verdict per admission, from the built-in decision and what the extensions added.

The metric, the log line, the audit annotation and `mutate -v` all read the same `Verdict`,
so they cannot disagree about what happened to a Pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webhook.admission.endpoints import endpoint_audit
from webhook.admission.entries import REQUIRE_CREDENTIALS_LABEL
from webhook.admission.extensions import Extras
from webhook.admission.mutation import Decision
from webhook.admission.notes import WARNED
from webhook.admission.reviews import Answer
from webhook.admission.wire import Reason

__all__ = ["Outcome", "Verdict", "answer", "required_denial", "verdict", "warnings_for"]

Outcome = Literal["mutated", "not_mutated", "denied"]

_WARNING_LIMIT = 120  # kubectl shows them whole up to about this length
_NO_EXTRAS = Extras()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened to the Pod, and the one-word reason."""

    outcome: Outcome
    reason: Reason | Literal["policy", "rule", "credentials-required"]

    @property
    def audit_decision(self) -> str:
        """The audit annotation's spelling (`not-mutated`, as it has always been)."""
        return self.outcome.replace("_", "-")


def required_denial(decision: Decision) -> str | None:
    """Ours: a Pod labelled `eks.amazonaws.com/require-credentials: "true"` that would get no
    credentials is refused rather than started without them."""
    if not decision.required or decision.method is not None:
        return None
    why = (
        f"ServiceAccount {decision.service_account} was not found"
        if decision.reason == "service-account-not-found"
        else f"ServiceAccount {decision.service_account} has no role"
    )
    return (
        f"the Pod requires AWS credentials (label {REQUIRE_CREDENTIALS_LABEL}=true) but {why}; "
        "annotate the ServiceAccount with a role, or remove the label"
    )


def verdict(decision: Decision, extras: Extras | None = None) -> Verdict:
    extras = extras or _NO_EXTRAS
    if decision.required and decision.method is None:
        return Verdict("denied", "credentials-required")
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
    if decision.container_roles:
        annotations["container-roles"] = ",".join(f"{c}={r}" for c, r in decision.container_roles)
    if decision.session_name is not None:
        annotations["role-session-name"] = str(decision.session_name)
    return annotations


def answer(decision: Decision, extras: Extras | None = None) -> Answer:
    """The response for the Pod: the patch (none when denied), warnings and audit record."""
    extras = extras or _NO_EXTRAS
    judged = verdict(decision, extras)
    denial = required_denial(decision) or extras.denial
    return Answer(
        ops=() if denial else (*decision.patch, *extras.patch),
        warnings=(*warnings_for(decision), *extras.warnings),
        audit={**_audit(decision, judged), **extras.audit},
        denial=denial,
    )
