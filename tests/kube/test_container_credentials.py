"""--watch-container-credentials-config: the file as a ConfigMap volume serves it.

A ConfigMap volume holds `..2026_x/identities.json`, a `..data -> ..2026_x` symlink and a
`identities.json -> ..data/identities.json` symlink; kubelet updates it by writing a new
timestamped directory and renaming a new symlink over `..data`, so the file the webhook opens
never changes in place. These tests drive the server's own wiring (`file_sources`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.kube.helpers import eventually
from webhook.config import Config
from webhook.server.metrics import Metrics
from webhook.sources.files import PolledFile, file_sources, identities_apply
from webhook.sources.store import Store

pytestmark = pytest.mark.timeout(20)

FILE = "identities.json"
_serial = itertools.count()


def document(*pairs: tuple[str, str]) -> str:
    return json.dumps({"identities": [{"namespace": ns, "serviceAccount": sa} for ns, sa in pairs]})


class ConfigMapVolume:
    """A directory laid out and updated the way kubelet does it for a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / FILE

    def publish(self, text: str | None) -> None:
        """Atomically swap in a new version (None: the key is gone from the ConfigMap)."""
        version = self.root / f"..2026_{next(_serial):04d}"
        version.mkdir()
        if text is not None:
            (version / FILE).write_text(text)
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        data = self.root / "..data"
        old = data.readlink() if data.is_symlink() else None
        link.rename(data)  # rename(2) over the old symlink: atomic
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{FILE}")
        if old is not None:
            for stale in (self.root / old).iterdir():
                stale.unlink()
            (self.root / old).rmdir()


class Watched:
    def __init__(self, tmp_path: Path, first: str | None) -> None:
        self.volume = ConfigMapVolume(tmp_path)
        self.volume.publish(first)
        self.store = Store(Config().mutation)
        self.metrics = Metrics(CollectorRegistry())
        config = Config(container_credentials_file=str(self.volume.path))
        [self.file] = file_sources(config, self.store, self.metrics.source_reloads_counter)

    def reloads(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "pod_identity_webhook_source_reloads_total",
            {"source": "container-credentials", "result": result},
        )
        return value or 0.0


def test_the_file_is_loaded_at_start(tmp_path: Path):
    watched = Watched(tmp_path, document(("default", "app")))

    assert watched.store.identities == {("default", "app")}
    assert watched.reloads("success") == 1


def test_a_data_symlink_swap_is_picked_up(tmp_path: Path):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish(document(("default", "app"), ("prod", "api")))

    assert watched.file.check() is True
    assert watched.store.identities == {("default", "app"), ("prod", "api")}
    assert watched.store.container_credentials("prod", "api")
    assert watched.file.check() is False  # nothing new since


def test_a_swap_to_identical_content_is_not_a_reload(tmp_path: Path):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish(document(("default", "app")))

    assert watched.file.check() is False
    assert watched.reloads("success") == 1


def test_bad_json_keeps_the_previous_identities_and_is_reported_once(tmp_path: Path):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish('{"identities": [')

    assert watched.file.check() is False
    assert watched.store.identities == {("default", "app")}
    assert watched.reloads("error") == 1
    assert watched.file.check() is False
    assert watched.reloads("error") == 1  # the same bad content is reported once

    watched.volume.publish(document(("default", "fixed")))
    assert watched.file.check() is True
    assert watched.store.identities == {("default", "fixed")}


@pytest.mark.parametrize(
    "text",
    ['{"identities": {"namespace": "a"}}', '{"identities": [{"namespace": 5}]}', "[]"],
    ids=["identities not a list", "namespace not a string", "not an object"],
)
def test_a_wrongly_shaped_document_keeps_the_previous_identities(tmp_path: Path, text: str):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish(text)

    assert watched.file.check() is False
    assert watched.store.identities == {("default", "app")}
    assert watched.reloads("error") == 1


@pytest.mark.parametrize("text", ["", "  \n", "null", "{}"], ids=["empty", "blank", "null", "{}"])
def test_an_empty_file_clears_the_identities(tmp_path: Path, text: str):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish(text)

    assert watched.file.check() is True
    assert watched.store.identities == frozenset()
    assert watched.reloads("error") == 0


def test_a_missing_file_clears_the_identities_and_a_new_one_restores_them(tmp_path: Path):
    watched = Watched(tmp_path, document(("default", "app")))

    watched.volume.publish(None)  # the symlink now dangles

    assert watched.file.check() is True
    assert watched.store.identities == frozenset()
    assert watched.reloads("error") == 0

    watched.volume.publish(document(("default", "back")))
    assert watched.file.check() is True
    assert watched.store.identities == {("default", "back")}


def test_a_file_missing_at_start_is_no_identities_not_an_error(tmp_path: Path):
    watched = Watched(tmp_path, None)

    assert watched.store.identities == frozenset()


def test_a_plain_file_replaced_by_rename_is_picked_up(tmp_path: Path):
    path = tmp_path / FILE
    path.write_text(document(("default", "app")))
    store = Store(Config().mutation)
    errors: list[Exception] = []
    file = PolledFile(str(path), identities_apply(store), on_error=errors.append)
    file.load()

    replacement = tmp_path / "new.json"
    replacement.write_text(document(("default", "other")))
    replacement.rename(path)

    assert file.check() is True
    assert store.identities == {("default", "other")}
    assert errors == []


async def test_the_poll_loop_applies_a_swap_without_being_asked(tmp_path: Path):
    volume = ConfigMapVolume(tmp_path)
    volume.publish(document(("default", "app")))
    store = Store(Config().mutation)
    errors: list[Exception] = []
    file = PolledFile(
        str(volume.path), identities_apply(store), on_error=errors.append, interval=0.01
    )
    file.load()
    task = asyncio.create_task(file.run())
    try:
        volume.publish(document(("default", "swapped")))
        await eventually(lambda: store.identities == {("default", "swapped")})
        volume.publish("{broken")
        await eventually(lambda: len(errors) == 1)
        assert store.identities == {("default", "swapped")}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
