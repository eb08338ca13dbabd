"""Files that feed the store: container-credentials identities, static ServiceAccounts files,
a static ConfigMap manifest. Each is read at start-up (a bad file is fatal then) and then polled
by content digest, which survives the `..data` symlink swap a Kubernetes ConfigMap volume uses
to update files; a bad new content keeps the previous one in force.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import structlog

from webhook.admission.entries import parse_container_credentials
from webhook.admission.notes import Note
from webhook.config import Config
from webhook.errors import ConfigError, InputError
from webhook.sources.associations import AssociationSource
from webhook.sources.manifests import StaticSources, load_documents, service_account_objects
from webhook.sources.store import Store

__all__ = ["Count", "PolledFile", "file_sources", "identities_apply"]

log = structlog.get_logger("webhook")

Apply = Callable[[str | None], None]
Count = Callable[[str, str], None]
"""Told (source, "success" | "error") after each load: the source-reload metric."""


class PolledFile:
    """Calls `apply(text)` with the file's content whenever it changes (None: no file).

    `apply` raises ValueError for content it rejects; the previous state then stays in force
    and `on_error` is told, once per distinct bad content.
    """

    def __init__(
        self,
        path: str,
        apply: Callable[[str | None], None],
        *,
        on_error: Callable[[Exception], None],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._apply = apply
        self._on_error = on_error
        self._interval = interval
        self._digest: str | None = ""  # "" = never read; None = file absent

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def load(self) -> None:
        """First read at start-up: raises OSError or ValueError instead of reporting."""
        text = self._read()
        self._apply(text)
        self._digest = None if text is None else hashlib.sha256(text.encode()).hexdigest()

    def check(self) -> bool:
        """Apply the file if it changed; True when new content was applied."""
        try:
            text = self._read()
        except (OSError, UnicodeDecodeError) as exc:
            digest: str | None = f"error:{exc}"
            if digest != self._digest:
                self._digest = digest
                self._on_error(exc)
            return False
        digest = None if text is None else hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            self._apply(text)
        except ValueError as exc:
            self._on_error(exc)
            return False
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()


def _service_accounts_apply(store: Store, paths: tuple[str, ...]) -> dict[str, Apply]:
    """One apply per --service-accounts file; any change re-lists the union of all files."""
    loaded: dict[str, list[tuple[str, str, dict[str, object]]]] = {}

    def for_path(path: str) -> Apply:
        def apply(text: str | None) -> None:
            if text is None:
                raise ValueError(f"{path} does not exist")
            notes: list[Note] = []
            try:
                loaded[path] = service_account_objects(load_documents(text, path), notes)
            except InputError as exc:
                raise ValueError(str(exc)) from None
            for note in notes:
                log.warning(note.code, detail=note.message)
            if len(loaded) == len(paths):
                store.replace_service_accounts(item for items in loaded.values() for item in items)

        return apply

    return {path: for_path(path) for path in paths}


def _config_map_apply(store: Store, config: Config) -> Apply:
    store.config_map_synced = False

    def apply(text: str | None) -> None:
        if text is None:
            store.set_config_map({})  # a deleted ConfigMap removes its entries (2d)
        else:
            documents = [d for d in load_documents(text, config.config_map_file) if d is not None]
            if len(documents) != 1:
                raise ValueError(f"{config.config_map_file}: expected one ConfigMap")
            scratch = StaticSources()
            try:
                scratch.set_config_map(
                    documents[0], namespace=config.namespace, config=config.mutation
                )
            except InputError as exc:
                raise ValueError(str(exc)) from None
            for note in scratch.notes:
                log.warning(note.code, detail=note.message)
            store.set_config_map(scratch.config_map)
        store.config_map_synced = True

    return apply


def identities_apply(store: Store, associations: AssociationSource | None = None) -> Apply:
    def apply(text: str | None) -> None:
        # Upstream: a missing or empty file clears the identities; a bad one keeps them.
        identities = parse_container_credentials(text or "")
        if associations is not None:
            associations.set_file(identities)  # united with the associations
        else:
            store.set_identities(identities)

    return apply


def file_sources(
    config: Config, store: Store, count: Count, associations: AssociationSource | None = None
) -> list[PolledFile]:
    """The file-fed sources, loaded now (a bad file is fatal at start-up) and polled later."""
    applies: dict[str, tuple[str, Apply]] = {}
    if config.service_accounts_files:
        paths = tuple(dict.fromkeys(config.service_accounts_files))
        for path, apply in _service_accounts_apply(store, paths).items():
            applies[path] = ("service-accounts", apply)
        if config.watch_config_map and not config.config_map_file:
            raise ConfigError(
                "--watch-config-map with --service-accounts needs --config-map FILE "
                "(the ConfigMap is read from the cluster only when ServiceAccounts are)"
            )
    if config.watch_config_map and config.config_map_file:
        applies[config.config_map_file] = ("config-map", _config_map_apply(store, config))
    if config.container_credentials_file:
        applies[config.container_credentials_file] = (
            "container-credentials",
            identities_apply(store, associations),
        )

    polled = []
    for path, (source, apply) in applies.items():

        def tracked(text: str | None, source: str = source, apply: Apply = apply) -> None:
            apply(text)
            count(source, "success")
            log.info("source_loaded", source=source, present=text is not None)

        def failed(error: Exception, source: str = source) -> None:
            count(source, "error")
            log.error(
                "source_reload_failed",
                source=source,
                error=str(error),
                action="kept the previous content",
            )

        file = PolledFile(path, tracked, on_error=failed)
        try:
            file.load()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load {path}: {exc}") from None
        polled.append(file)
    return polled
