"""The Kubernetes-fed sources: reflectors that keep the store's ServiceAccounts and ConfigMap
entries current, and the live GET of a ServiceAccount the cache does not have yet.

The reflectors run in threads (the official client is synchronous) and parse ServiceAccounts
into store entries there, so the admission path never waits behind a big list; results reach
the event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from webhook.admission.entries import (
    CONFIG_MAP_KEY,
    CONFIG_MAP_NAME,
    ServiceAccountEntry,
    parse_config_map,
    parse_service_account,
)
from webhook.config import Config, MutationConfig
from webhook.errors import ApiError
from webhook.kube import FETCH_TIMEOUT, Api, Reflector, client_configuration
from webhook.sources.store import Store

__all__ = ["Fetcher", "Informers", "start_informers"]

log = structlog.get_logger("webhook.kube")

FETCH_RATE, FETCH_BURST = 10.0, 20  # upstream's fallback limits
JOIN_TIMEOUT = 5.0


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


class _TokenBucket:
    """`rate` tokens a second, at most `burst` saved: bounds live GETs under a miss storm."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self._rate)


class Fetcher:
    """Live GET of a ServiceAccount the cache does not have yet (docs/compatibility.md, 2c).

    One request per key at a time, rate-limited, with a timeout, run in a thread. A failed GET
    is forgotten, so the next miss for that key tries again (upstream never retried).
    """

    def __init__(
        self,
        api: Api,
        store: Store,
        config: MutationConfig,
        *,
        rate: float = FETCH_RATE,
        burst: int = FETCH_BURST,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._api, self._store, self._config = api, store, config
        self._bucket = _TokenBucket(rate, burst)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._on_result = on_result

    def __call__(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        if key not in self._in_flight:
            self._in_flight[key] = asyncio.get_running_loop().create_task(
                self._fetch(namespace, name)
            )

    async def _fetch(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        result = "error"
        try:
            await self._bucket.take()
            path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
            obj = await asyncio.wait_for(
                asyncio.to_thread(self._api.get, path), FETCH_TIMEOUT + 0.5
            )
            if obj is None:
                result = "not_found"
                self._store.not_found(key)
            else:
                self._store.put_entry(key, _entry(obj, self._config), via="api")
                result = "found"
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning(
                "service_account_fetch_failed", service_account=key, error=str(exc) or "timeout"
            )
        finally:
            del self._in_flight[key]
            if self._on_result is not None:
                self._on_result(result)

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)


def _entry(obj: Mapping[str, Any], config: MutationConfig) -> ServiceAccountEntry:
    annotations = _metadata(obj).get("annotations")
    prefix = config.annotation_prefix + "/"
    kept = (
        {k: v for k, v in annotations.items() if k.startswith(prefix)}
        if isinstance(annotations, dict)
        else {}
    )
    return parse_service_account(kept, config)


def _key(obj: Mapping[str, Any]) -> str | None:
    metadata = _metadata(obj)
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return f"{namespace}/{name}"


class Informers:
    """The ServiceAccount reflector, the optional ConfigMap reflector and the live fetcher."""

    def __init__(
        self,
        api: Api,
        store: Store,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        *,
        on_error: Callable[[str], None] | None = None,
        on_fetch: Callable[[str], None] | None = None,
    ) -> None:
        self.api, self._store, self._config, self._loop = api, store, config, loop
        self._stop = threading.Event()
        watch_seconds = max(1, int(config.resync_period) or 60)
        mutation = config.mutation

        def listed(items: Iterable[Any]) -> None:
            entries = {}
            for obj in items:
                key = _key(obj) if isinstance(obj, dict) else None
                if key is not None:
                    entries[key] = _entry(obj, mutation)
            self._call(store.replace_entries, entries)

        def changed(kind: str, obj: dict[str, Any]) -> None:
            key = _key(obj)
            if key is None:
                log.warning("malformed_event", source="serviceaccounts", detail=str(obj)[:200])
            elif kind == "DELETED":
                self._call(store.delete_entry, key)
            else:
                self._call(store.put_entry, key, _entry(obj, mutation))

        self._reflectors = [
            Reflector(
                api=api,
                path="/api/v1/serviceaccounts",
                query={},
                on_list=listed,
                on_event=changed,
                watch_seconds=watch_seconds,
                name="serviceaccounts",
                stop=self._stop,
                on_error=on_error,
            )
        ]
        if config.watch_config_map:
            store.config_map_synced = False
            self._reflectors.append(
                Reflector(
                    api=api,
                    path=f"/api/v1/namespaces/{config.namespace}/configmaps",
                    query={"fieldSelector": f"metadata.name={CONFIG_MAP_NAME}"},
                    on_list=self._config_map_listed,
                    on_event=self._config_map_changed,
                    watch_seconds=watch_seconds,
                    name="configmap",
                    stop=self._stop,
                    on_error=on_error,
                )
            )
        self.fetcher = Fetcher(api, store, mutation, on_result=on_fetch)
        store.on_miss = self.fetcher
        self._threads: list[threading.Thread] = []

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            self._stop.set()

    def _apply_config_map(self, obj: Mapping[str, Any] | None) -> None:
        if obj is None:
            self._call(self._store.set_config_map, {})  # deleted: drop its entries (2d)
        else:
            data = obj.get("data")
            text = data.get(CONFIG_MAP_KEY) if isinstance(data, dict) else None
            entries, notes = parse_config_map(
                text if isinstance(text, str) else None, self._config.mutation
            )
            for note in notes:
                log.warning(note.code, detail=note.message)
            if entries is not None:
                self._call(self._store.set_config_map, entries)
        self._call(setattr, self._store, "config_map_synced", True)

    def _config_map_listed(self, items: Iterable[Any]) -> None:
        found = [
            o for o in items if isinstance(o, dict) and _metadata(o).get("name") == CONFIG_MAP_NAME
        ]
        self._apply_config_map(found[0] if found else None)

    def _config_map_changed(self, kind: str, obj: dict[str, Any]) -> None:
        if _metadata(obj).get("name") == CONFIG_MAP_NAME:
            self._apply_config_map(None if kind == "DELETED" else obj)

    def start(self) -> None:
        for reflector in self._reflectors:
            thread = threading.Thread(
                target=reflector.run, name=f"reflector-{reflector.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    @property
    def running(self) -> bool:
        """Every reflector thread is alive (they retry forever; only close() ends them)."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    @property
    def stopped(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    async def close(self) -> None:
        """Stop the reflectors and wait for their threads; open watches are cut short."""
        self._stop.set()
        self.api.close_watches()
        await self.fetcher.close()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT)
            if thread.is_alive():  # a list page still being read; it ends at its timeout
                log.warning("reflector_still_running", thread=thread.name)


def start_informers(
    config: Config,
    store: Store,
    loop: asyncio.AbstractEventLoop,
    *,
    on_error: Callable[[str], None] | None = None,
    on_fetch: Callable[[str], None] | None = None,
) -> Informers:
    """Connect with the configured credentials and start the reflectors."""
    api = Api(client_configuration(config))
    informers = Informers(api, store, config, loop, on_error=on_error, on_fetch=on_fetch)
    informers.start()
    return informers
