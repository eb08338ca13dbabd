"""tests/support/logs.py: the tiers' build logs never outlive a session run without pytest's
cache, and stay in the cache when it is on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.logs import log_directory


class _Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def mkdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path


class _Config:
    """What log_directory uses of a pytest.Config."""

    def __init__(self, cache: _Cache | None) -> None:
        self.cache = cache
        self.stash = pytest.Stash()
        self.cleanups: list[Callable[[], object]] = []

    def add_cleanup(self, cleanup: Callable[[], object]) -> None:
        self.cleanups.append(cleanup)


def test_without_the_cache_one_directory_per_tier_removed_at_the_end() -> None:
    config = _Config(cache=None)
    e2e = log_directory(config, "e2e")  # type: ignore[arg-type]
    assert log_directory(config, "e2e") == e2e  # type: ignore[arg-type]
    monitoring = log_directory(config, "monitoring")  # type: ignore[arg-type]
    assert monitoring != e2e
    (e2e / "build.log").write_text("built\n")
    assert e2e.is_dir()
    assert monitoring.is_dir()
    for cleanup in config.cleanups:
        cleanup()
    assert not e2e.exists()
    assert not monitoring.exists()


def test_with_the_cache_the_logs_stay_in_it(tmp_path: Path) -> None:
    config = _Config(cache=_Cache(tmp_path))
    directory = log_directory(config, "node")  # type: ignore[arg-type]
    assert directory == tmp_path / "node"
    assert directory.is_dir()
    assert not config.cleanups
