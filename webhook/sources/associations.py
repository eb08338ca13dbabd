"""PodIdentityAssociations as a source of the webhook's container-credentials mode.

With `--watch-pod-identity-associations`, a ServiceAccount that has an association gets the
container-credentials variables and token, exactly as one listed in the
`--watch-container-credentials-config` file (which keeps working: the two are united). The
association's role is recorded on the decision, so `--policy` judges it at admission exactly as
it judges an annotated role (and the broker judges it again when it hands out credentials).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import structlog

from webhook.admission.mutation import Decision
from webhook.kube import Api, association_reflector
from webhook.podidentity.associations import AssociationIndex
from webhook.sources.store import Store

__all__ = ["AssociationSource", "with_association_role"]

JOIN_TIMEOUT = 5.0

log = structlog.get_logger("webhook.associations")


class AssociationSource:
    """Keeps the store's container-credentials identities: the file's plus the associations."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._file: frozenset[tuple[str, str]] = frozenset()
        self.index = AssociationIndex()
        self._thread: threading.Thread | None = None
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

    def watch(
        self,
        api: Api,
        loop: asyncio.AbstractEventLoop,
        *,
        watch_seconds: int,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """List and watch the associations in a thread until `close`."""
        self._api, self._stop = api, threading.Event()
        self._thread = association_reflector(
            api,
            loop,
            self._stop,
            on_list=self.listed,
            on_event=self.changed,
            watch_seconds=watch_seconds,
            on_error=on_error,
        )

    async def close(self) -> None:
        """Stop the watch and wait for its thread; an open watch is cut short."""
        if self._thread is None:
            return
        self._stop.set()
        self._api.close_watches()
        await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.warning("reflector_still_running", thread=self._thread.name)

    def _publish(self) -> None:
        self._store.association_roles = {a.key: a.effective_role for a in self.index.values()}
        self._store.set_identities(self._file | self.index.keys())


def with_association_role(decision: Decision, store: Store) -> Decision:
    """The decision with the association's role, for the policy, the audit and the logs."""
    if decision.method != "container_credentials":
        return decision
    role = store.association_roles.get((decision.namespace, decision.name))
    if not role:
        return decision
    return dataclasses.replace(decision, role_arn=role, role_source="pod-identity-association")
