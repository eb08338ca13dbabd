"""Static identity sources read from manifests: the `mutate` command's view of a cluster.

Reads ServiceAccount, ConfigMap and container-credentials files (YAML or JSON), parses them once
with the same functions the live sources use, and answers the mutation core's lookups.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from webhook.admission.entries import (
    CONFIG_MAP_KEY,
    CONFIG_MAP_NAME,
    ConfigMapEntry,
    ServiceAccountEntry,
    parse_config_map,
    parse_container_credentials,
    parse_service_account,
)
from webhook.admission.notes import Note
from webhook.config import MutationConfig
from webhook.errors import InputError

__all__ = ["StaticSources", "load_documents", "read_text", "service_account_objects"]


@dataclass(slots=True)
class StaticSources:
    """Identity sources held in memory; implements mutation.Sources."""

    service_accounts: dict[str, ServiceAccountEntry] = field(default_factory=dict)
    config_map: dict[str, ConfigMapEntry] = field(default_factory=dict)
    identities: frozenset[tuple[str, str]] = frozenset()
    notes: list[Note] = field(default_factory=list)
    """Problems found while loading (skipped ConfigMap entries, ignored objects)."""

    def service_account(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self.service_accounts.get(f"{namespace}/{name}")

    def config_map_entry(self, key: str) -> ConfigMapEntry | None:
        return self.config_map.get(key)

    def container_credentials(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.identities

    def add_service_accounts(self, documents: Iterable[Any], config: MutationConfig) -> None:
        for namespace, name, given in service_account_objects(documents, self.notes):
            self.service_accounts[f"{namespace}/{name}"] = parse_service_account(given, config)

    def set_config_map(self, obj: Any, *, namespace: str, config: MutationConfig) -> None:
        """Apply a ConfigMap manifest as the server's ConfigMap watch would."""
        if not isinstance(obj, dict) or obj.get("kind", "ConfigMap") != "ConfigMap":
            raise InputError("the ConfigMap file does not hold a ConfigMap")
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        found_ns = metadata.get("namespace") or "default"
        if name != CONFIG_MAP_NAME or found_ns != namespace:
            self.notes.append(
                Note(
                    "config-map-ignored",
                    f"ConfigMap {found_ns}/{name} ignored: the webhook reads "
                    f"{namespace}/{CONFIG_MAP_NAME} (--namespace)",
                )
            )
            return
        data = obj.get("data") or {}
        text = data.get(CONFIG_MAP_KEY) if isinstance(data, dict) else None
        entries, notes = parse_config_map(text if isinstance(text, str) else None, config)
        self.notes.extend(notes)
        self.config_map = entries or {}

    def set_container_credentials(self, text: str) -> None:
        try:
            self.identities = parse_container_credentials(text)
        except ValueError as exc:
            raise InputError(f"container-credentials file: {exc}") from None


def service_account_objects(
    documents: Iterable[Any], notes: list[Note]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, annotations) of each ServiceAccount; other kinds are noted and skipped."""
    found = []
    for obj in _objects(documents):
        if obj.get("kind", "ServiceAccount") != "ServiceAccount":
            notes.append(
                Note("object-ignored", f"ignored a {obj.get('kind')!r} in a ServiceAccounts file")
            )
            continue
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise InputError("a ServiceAccount has no metadata.name")
        namespace = metadata.get("namespace") or "default"
        annotations = metadata.get("annotations") or {}
        if not isinstance(annotations, dict) or not isinstance(namespace, str):
            raise InputError(f"ServiceAccount {metadata['name']}: malformed metadata")
        found.append((namespace, metadata["name"], annotations))
    return found


def _objects(documents: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Flatten documents and `List` kinds into objects."""
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise InputError("a document is not a Kubernetes object")
        if isinstance(document.get("items"), list) and str(document.get("kind", "")).endswith(
            "List"
        ):
            yield from _objects(document["items"])
        else:
            yield document


def read_text(path: str, stdin: TextIO | None = None) -> str:
    """The content of `path`, or of stdin for `-`."""
    if path == "-":
        return (stdin or sys.stdin).read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read {path}: {reason}") from None


def load_documents(text: str, where: str) -> list[Any]:
    """All YAML (and so JSON) documents of a file."""
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"{where}: not valid YAML or JSON{place}: {problem}") from None
