"""PodIdentityAssociations as a source of the webhook's container-credentials mode.

With `--watch-pod-identity-associations`, a ServiceAccount that has an association gets the
container-credentials variables and token, exactly as one listed in the
`--watch-container-credentials-config` file (which keeps working: the two are united). The
association's role is recorded on the decision, so `--policy` judges it at admission exactly as
it judges an annotated role (and the broker judges it again when it hands out credentials).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from webhook.mutation import Decision
from webhook.podidentity.associations import AssociationIndex
from webhook.store import Store

__all__ = ["AssociationSource", "with_association_role"]

log = structlog.get_logger("webhook.associations")


class AssociationSource:
    """Keeps the store's container-credentials identities: the file's plus the associations."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._file: frozenset[tuple[str, str]] = frozenset()
        self.index = AssociationIndex()
        store.associations_synced = False

    def set_file(self, identities: frozenset[tuple[str, str]]) -> None:
        self._file = identities
        self._publish()

    def listed(self, items: list[dict[str, Any]]) -> None:
        for problem in self.index.replace(items):
            log.warning("association_invalid", problem=problem)
        self._store.associations_synced = True
        self._publish()
        log.info("associations_synced", associations=len(self.index))

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.index.delete(obj)
        elif (problem := self.index.put(obj)) is not None:
            log.warning("association_invalid", problem=problem)
        self._publish()

    def _publish(self) -> None:
        self._store.association_roles = {a.key: a.effective_role for a in self.index.values()}
        self._store.set_identities(self._file | self.index.keys())


def with_association_role(decision: Decision, store: Store) -> Decision:
    """The decision with the association's role, for the policy, the audit and the logs."""
    if decision.method != "container_credentials":
        return decision
    namespace, _, name = decision.service_account.partition("/")
    role = store.association_roles.get((namespace, name))
    if not role:
        return decision
    return dataclasses.replace(decision, role_arn=role, role_source="pod-identity-association")
