"""Pure. Notes: the explained decisions and problems the core returns instead of logging.

Each note has a stable code (for logs, metrics and tests) and one short sentence for humans.
Some codes also become kubectl warnings; the rest only reach the log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["WARNED", "Note", "NoteCode"]

NoteCode = Literal[
    "ca-bundle",
    "config-map-entry-skipped",
    "config-map-ignored",
    "config-map-invalid",
    "container-role",
    "container-skipped",
    "expiration-clamped",
    "expiration-jittered",
    "invalid-annotation",
    "invalid-role-arn",
    "namespace-missing",
    "object-ignored",
    "service-account-late",
    "service-account-not-found",
    "sts-endpoint",
    "variables-present",
]

#: Notes that deserve a kubectl warning; the others (jitter, skipped entries) only reach logs.
WARNED: frozenset[NoteCode] = frozenset(
    {
        "service-account-not-found",
        "service-account-late",
        "namespace-missing",
        "expiration-clamped",
        "container-skipped",
        "container-role",
        "variables-present",
        "invalid-annotation",
        "invalid-role-arn",
        "sts-endpoint",  # ours: a redirected STS and a trusted CA are worth seeing
        "ca-bundle",
    }
)


@dataclass(frozen=True, slots=True)
class Note:
    """One explained decision or problem: a stable code and a short human sentence."""

    code: NoteCode
    message: str
