"""Fixtures of the monitoring tests: promtool and the `selectors` helper (tools/promtool),
built once per session before the tests run, outside any test's timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitoring.tools import Promtool, find_promtool
from tests.support.logs import log_directory
from tests.support.tiers import REQUIRE_PROMTOOL, unavailable

HERE = Path(__file__).resolve().parent
PROMTOOL = pytest.StashKey[Promtool]()
FIXTURES = {"promtool", "selectors"}


def _find(config: pytest.Config) -> Promtool:
    if PROMTOOL not in config.stash:
        directory = log_directory(config, "monitoring")
        config.stash[PROMTOOL] = find_promtool(directory / "promtool-build.log")
    return config.stash[PROMTOOL]


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly:
        return
    wanted = any(
        Path(item.path).is_relative_to(HERE) and FIXTURES & set(getattr(item, "fixturenames", ()))
        for item in session.items
    )
    if wanted and PROMTOOL not in config.stash:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("monitoring: looking for promtool (tools/promtool/build.sh)")
        _find(config)


def _tool(config: pytest.Config, name: str) -> Path:
    found = _find(config)
    if name not in found.paths:
        unavailable(name, found.missing.get(name, "not looked for"), require=REQUIRE_PROMTOOL)
    return found.paths[name]


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> Path:
    return _tool(request.config, "promtool")


@pytest.fixture(scope="session")
def selectors(request: pytest.FixtureRequest) -> Path:
    return _tool(request.config, "selectors")
