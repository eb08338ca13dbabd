"""Fixtures of the deployment tier: the rendering tools, found or installed once per session.

The tools are installed (tools/deploy/install-tools.sh; minutes on a cold machine, seconds
after that) once the test items are known, outside any test's timeout, as the e2e tier does
with its binaries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.rendering import Obj, Renderer, Variant
from tests.deploy.tools import Crds, Tools, find_monitoring_crds, find_tools
from tests.e2e.cluster import find_binaries
from tests.e2e.conftest import BINARIES, cluster
from tests.support.logs import log_directory
from tests.support.tiers import REQUIRE_DEPLOY_TOOLS, unavailable

#: The e2e tier's session fixture (kube-apiserver and etcd), for test_against_apiserver.py.
__all__ = ["cluster"]

HERE = Path(__file__).resolve().parent
TOOLS = pytest.StashKey[Tools]()
CRDS = pytest.StashKey[Crds]()
TOOL_FIXTURES = {
    "kustomize",
    "helm",
    "hadolint",
    "shellcheck",
    "renderer",
    "render",
    "deploy_tools",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: takes tens of seconds or more (deselect with -m 'not slow')"
    )
    config.addinivalue_line(
        "markers",
        "network: needs the Python package index; skipped, with the reason, when unreachable",
    )


def _log_path(config: pytest.Config, name: str) -> Path:
    return log_directory(config, "deploy") / name


def _needs_tools(item: pytest.Item) -> bool:
    return bool(TOOL_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    deploy_items = [item for item in session.items if Path(item.path).is_relative_to(HERE)]
    if TOOLS not in config.stash and any(_needs_tools(item) for item in deploy_items):
        if reporter is not None:
            reporter.write_line(
                "deploy: looking for kustomize, helm, hadolint, shellcheck (install-tools.sh)"
            )
        config.stash[TOOLS] = find_tools(_log_path(config, "install-tools.log"))
    # The e2e tier's binaries, built if need be outside any test's timeout (as tests/e2e does
    # when its own tests are collected).
    wants_cluster = any("cluster" in getattr(item, "fixturenames", ()) for item in deploy_items)
    if wants_cluster and BINARIES not in config.stash:
        if reporter is not None and not os.environ.get("KUBEBUILDER_ASSETS"):
            reporter.write_line("deploy: looking for kube-apiserver and etcd (tools/kube/build.sh)")
        config.stash[BINARIES] = find_binaries(_log_path(config, "kube-build.log"))
    # The Prometheus Operator's CRDs, which the dry runs of the monitoring objects need.
    if wants_cluster and CRDS not in config.stash:
        if reporter is not None and not os.environ.get("PROMETHEUS_OPERATOR_CRDS"):
            reporter.write_line(
                "deploy: looking for the monitoring.coreos.com CRDs "
                "(tools/prometheus-operator-crds/generate.sh)"
            )
        config.stash[CRDS] = find_monitoring_crds(_log_path(config, "crds-generate.log"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tools = terminalreporter.config.stash.get(TOOLS, None)
    if tools is None:
        return
    found = ", ".join(sorted(tools.paths)) or "none"
    terminalreporter.write_line(f"deploy: tools {found} from {tools.how or 'nowhere'}")
    for name, why in sorted(tools.missing.items()):
        terminalreporter.write_line(f"deploy: {name} missing: {why}")


@pytest.fixture(scope="session")
def deploy_tools(request: pytest.FixtureRequest) -> Tools:
    config = request.config
    if TOOLS not in config.stash:
        config.stash[TOOLS] = find_tools(_log_path(config, "install-tools.log"))
    return config.stash[TOOLS]


def _tool(tools: Tools, name: str) -> Path:
    if name not in tools.paths:
        unavailable(name, tools.missing.get(name, "not looked for"), require=REQUIRE_DEPLOY_TOOLS)
    return tools.paths[name]


@pytest.fixture(scope="session")
def kustomize(deploy_tools: Tools) -> Path:
    return _tool(deploy_tools, "kustomize")


@pytest.fixture(scope="session")
def helm(deploy_tools: Tools) -> Path:
    return _tool(deploy_tools, "helm")


@pytest.fixture(scope="session")
def hadolint(deploy_tools: Tools) -> Path:
    return _tool(deploy_tools, "hadolint")


@pytest.fixture(scope="session")
def shellcheck(deploy_tools: Tools) -> Path:
    return _tool(deploy_tools, "shellcheck")


@pytest.fixture(scope="session")
def renderer(deploy_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(
        kustomize=deploy_tools.paths.get("kustomize"),
        helm=deploy_tools.paths.get("helm"),
        workdir=tmp_path_factory.mktemp("render"),
    )


@pytest.fixture
def render(renderer: Renderer, deploy_tools: Tools) -> Callable[[Variant], list[Obj]]:
    """`render(variant)`: its objects, or a skip when its tool is unavailable."""

    def rendered(variant: Variant) -> list[Obj]:
        _tool(deploy_tools, variant.tool)
        return renderer.render(variant)

    return rendered


@pytest.fixture(scope="session")
def monitoring_crds(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The CRD file of each monitoring.coreos.com kind the monitoring options render."""
    config = request.config
    if CRDS not in config.stash:
        config.stash[CRDS] = find_monitoring_crds(_log_path(config, "crds-generate.log"))
    crds = config.stash[CRDS]
    if not crds.files:
        unavailable("the monitoring CRDs", crds.missing, require=REQUIRE_DEPLOY_TOOLS)
    return crds.files
