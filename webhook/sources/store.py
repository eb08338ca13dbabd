"""The in-memory identity store the admission path reads; asyncio only, no I/O.

Sources (the Kubernetes informer, static files, the container-credentials watcher) write into
it on the event loop; the mutation core reads it through the `mutation.Sources` protocol. Each
ServiceAccount is parsed into a small entry when it changes, never per admission, and only the
entry is kept (upstream strips ServiceAccounts for the same reason: memory on large clusters).

A lookup that misses can wait for the ServiceAccount to arrive (the grace period of
docs/compatibility.md, 2c): `wait_for` parks a future per key that any later
`put_service_account` resolves, and tells the live-lookup hook, if one is set, to fetch the key
from the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from webhook.admission.entries import ConfigMapEntry, ServiceAccountEntry, parse_service_account
from webhook.admission.wire import LookupPath
from webhook.config import MutationConfig

__all__ = ["Store"]

MissHook = Callable[[str, str], None]
Arrival = Literal["informer", "api", ""]
"""How a waited-for ServiceAccount arrived; empty: the API server says it does not exist."""


class Store:
    """ServiceAccount entries, ConfigMap entries and container-credentials identities."""

    def __init__(self, config: MutationConfig) -> None:
        self._config = config
        self._service_accounts: dict[str, ServiceAccountEntry] = {}
        self._config_map: dict[str, ConfigMapEntry] = {}
        self._identities: frozenset[tuple[str, str]] = frozenset()
        self._waiters: dict[str, list[asyncio.Future[Arrival]]] = {}
        self.on_miss: MissHook | None = None
        """Called once per waited key, e.g. to start a live GET (deduplicated by the hook)."""
        self.service_accounts_synced = False
        self.config_map_synced = True
        self.associations_synced = True
        """False until PodIdentityAssociations are listed (--watch-pod-identity-associations)."""
        self.association_roles: dict[tuple[str, str], str] = {}
        """(namespace, ServiceAccount) → the role of its PodIdentityAssociation."""
        self.ever_populated = False
        """Upstream's pod_identity_webhook_used gauge: some ServiceAccount was seen."""

    # mutation.Sources -------------------------------------------------------------------------

    def service_account(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self._service_accounts.get(f"{namespace}/{name}")

    def config_map_entry(self, key: str) -> ConfigMapEntry | None:
        return self._config_map.get(key)

    def container_credentials(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._identities

    # writers ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.service_accounts_synced and self.config_map_synced and self.associations_synced

    def __len__(self) -> int:
        return len(self._service_accounts)

    def put_entry(self, key: str, entry: ServiceAccountEntry, *, via: Arrival = "informer") -> None:
        """Store a parsed entry under `namespace/name` and wake whoever waits for it."""
        self._service_accounts[key] = entry
        self.ever_populated = True
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(via)

    def not_found(self, key: str) -> None:
        """The API server says the ServiceAccount does not exist: stop waiting for it now."""
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result("")

    def delete_entry(self, key: str) -> None:
        self._service_accounts.pop(key, None)

    def replace_entries(self, entries: dict[str, ServiceAccountEntry]) -> None:
        """A full list: entries not in it are dropped (deleted while we were not watching)."""
        self._service_accounts = entries
        if entries:
            self.ever_populated = True
        for key in [k for k in self._waiters if k in entries]:
            for future in self._waiters.pop(key):
                if not future.done():
                    future.set_result("informer")
        self.service_accounts_synced = True

    def put_service_account(
        self, namespace: str, name: str, annotations: Mapping[str, Any] | None
    ) -> None:
        self.put_entry(f"{namespace}/{name}", parse_service_account(annotations, self._config))

    def replace_service_accounts(
        self, items: Iterable[tuple[str, str, Mapping[str, Any] | None]]
    ) -> None:
        self.replace_entries(
            {
                f"{ns}/{name}": parse_service_account(given, self._config)
                for ns, name, given in items
            }
        )

    def set_config_map(self, entries: Mapping[str, ConfigMapEntry]) -> None:
        self._config_map = dict(entries)

    def set_identities(self, identities: frozenset[tuple[str, str]]) -> None:
        self._identities = identities

    @property
    def identities(self) -> frozenset[tuple[str, str]]:
        return self._identities

    # waiting ----------------------------------------------------------------------------------

    async def wait_for(self, namespace: str, name: str, within: float) -> LookupPath | None:
        """Wait up to `within` seconds for the ServiceAccount.

        Returns how it arrived (`informer` or `api`), `cache` if it was already there, or None
        when the time is up or the API server said it does not exist.
        """
        key = f"{namespace}/{name}"
        if key in self._service_accounts:
            return "cache"
        future: asyncio.Future[Arrival] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(key, [])
        first = not waiters
        waiters.append(future)
        if first and self.on_miss is not None:
            self.on_miss(namespace, name)
        try:
            async with asyncio.timeout(within):
                return await future or None
        except TimeoutError:
            return "informer" if key in self._service_accounts else None
        finally:
            remaining = self._waiters.get(key)
            if remaining is not None and future in remaining:
                remaining.remove(future)
                if not remaining:
                    del self._waiters[key]

    # debugging --------------------------------------------------------------------------------

    def dump(self) -> dict[str, dict[str, Any]]:
        """Upstream's /debug/alpha/cache body: the ServiceAccount entries, keys sorted."""
        return {
            key: {
                "RoleARN": entry.role_arn,
                "Audience": entry.audience,
                "UseRegionalSTS": entry.regional_sts,
                "TokenExpiration": entry.token_expiration,
            }
            for key, entry in sorted(self._service_accounts.items())
        }

    def clear(self) -> None:
        """Upstream's /debug/alpha/cache/clear: forget ServiceAccount and ConfigMap entries."""
        self._service_accounts = {}
        self._config_map = {}
