"""Fixtures of the workflow tests: actionlint (tools/actionlint) and the shellcheck it runs on
`run:` scripts (tools/deploy/install-tools.sh), found or built once per session before the
tests run, outside any test's timeout. Without them the tests that need them are skipped with
the reason, unless POD_IDENTITY_WEBHOOK_REQUIRE_ACTIONLINT=1 (CI), which makes them fail."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.logs import log_directory

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "POD_IDENTITY_WEBHOOK_REQUIRE_ACTIONLINT"
SCRIPTS = {
    "actionlint": [str(REPO / "tools" / "actionlint" / "build.sh")],
    "shellcheck": [str(REPO / "tools" / "deploy" / "install-tools.sh"), "shellcheck"],
}
FOUND = pytest.StashKey["Linters"]()


@dataclass
class Linters:
    paths: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find(name: str, log: Path) -> Path | str:
    """The tool's path from its script's last line of stdout, or why there is none."""
    override = os.environ.get(name.upper(), "")
    if override:
        return Path(override) if _executable(Path(override)) else f"{name.upper()} is no program"
    with log.open("wb") as output:
        result = subprocess.run(
            SCRIPTS[name],
            stdout=subprocess.PIPE,
            stderr=output,
            check=False,
            cwd=REPO,
            timeout=3600,
        )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    errors = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        why = errors[-1] if errors else f"exit status {result.returncode}"
        return f"{Path(SCRIPTS[name][0]).relative_to(REPO)} failed: {why} (see {log})"
    path = Path(lines[-1])
    if name == "shellcheck":  # install-tools.sh prints the directory
        path = path / "shellcheck"
    return path if _executable(path) else f"{path} is not an executable"


def _linters(config: pytest.Config) -> Linters:
    if FOUND not in config.stash:
        directory = log_directory(config, "workflows")
        found = Linters()
        for name in SCRIPTS:
            result = _find(name, directory / f"{name}-build.log")
            if isinstance(result, Path):
                found.paths[name] = result
            else:
                found.missing[name] = result
        config.stash[FOUND] = found
    return config.stash[FOUND]


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly:
        return
    here = Path(__file__).resolve().parent
    if any(
        Path(item.path).is_relative_to(here) and "actionlint" in getattr(item, "fixturenames", ())
        for item in session.items
    ):
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("workflows: looking for actionlint (tools/actionlint/build.sh)")
        _linters(config)


@dataclass(frozen=True)
class Actionlint:
    program: Path
    shellcheck: Path

    def run(self, *files: Path) -> subprocess.CompletedProcess[str]:
        argv = [str(self.program), "-no-color", "-shellcheck", str(self.shellcheck)]
        return subprocess.run(
            [*argv, *map(str, files)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=120,
        )


@pytest.fixture(scope="session")
def actionlint(request: pytest.FixtureRequest) -> Actionlint:
    found = _linters(request.config)
    if found.missing:
        why = "; ".join(f"{name}: {reason}" for name, reason in sorted(found.missing.items()))
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"actionlint required ({REQUIRE_ENV}=1) but {why}", pytrace=False)
        pytest.skip(f"actionlint unavailable: {why}")
    return Actionlint(found.paths["actionlint"], found.paths["shellcheck"])
