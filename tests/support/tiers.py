"""Tiers that need tools from outside the repository: find them, or say in one line why not.

A tool comes from an environment variable naming it, or from one of the repository's scripts
(tools/kube/build.sh, tools/upstream/build.sh, tools/deploy/install-tools.sh) that builds or
installs it into a cache outside the repository and prints where as its last line. Without it
a tier is skipped with that one line, unless its POD_IDENTITY_WEBHOOK_REQUIRE_* variable is 1
(as in CI), which makes the tier fail instead: a required tier never hides behind a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Makes the tiers behind a real kube-apiserver (e2e, differential, deploy's dry runs) fail
#: instead of skipping when their binaries cannot be had.
REQUIRE_E2E = "POD_IDENTITY_WEBHOOK_REQUIRE_E2E"
#: Likewise for kustomize, helm, hadolint and shellcheck (and the monitoring CRDs).
REQUIRE_DEPLOY_TOOLS = "POD_IDENTITY_WEBHOOK_REQUIRE_DEPLOY_TOOLS"
#: Likewise for promtool and its `selectors` helper (the alert and dashboard tests).
REQUIRE_PROMTOOL = "POD_IDENTITY_WEBHOOK_REQUIRE_PROMTOOL"
#: Likewise for the node agent's network-namespace test (root and iproute2).
REQUIRE_NETNS = "POD_IDENTITY_WEBHOOK_REQUIRE_NETNS"


def required(variable: str) -> bool:
    return os.environ.get(variable) == "1"


def unavailable(what: str, why: str, *, require: str) -> NoReturn:
    """Skip the test (one reason for the whole tier), or fail it when `require` is set."""
    if required(require):
        pytest.fail(f"{what} required ({require}=1) but {why}", pytrace=False)
    pytest.skip(f"{what} skipped: {why}")


def executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def run_script(script: Path, *args: str, log: Path, timeout: float | None = None) -> Path | str:
    """Run a build or install script and return the path it printed last, or why it did not.

    Its stderr goes to `log`; the reason is the last line written there (or its exit status),
    with the log's name so that the whole story is one `cat` away.
    """
    if not executable(script):
        return f"{script} is missing"
    with log.open("wb") as output:
        result = subprocess.run(
            [str(script), *args],
            stdout=subprocess.PIPE,
            stderr=output,
            check=False,
            cwd=REPO,
            timeout=timeout,
        )
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    if result.returncode == 0 and lines:
        return Path(lines[-1])
    written = log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line for line in written if line.strip()]
    why = errors[-1] if errors else f"exit status {result.returncode}"
    return f"{why} (see {log})"


def printed_directory(script: Path) -> Path | None:
    """Where `script --print-dir` says its cache is (whether or not anything is there)."""
    if not executable(script):
        return None
    result = subprocess.run(
        [str(script), "--print-dir"], capture_output=True, check=False, cwd=REPO
    )
    printed = result.stdout.decode(errors="replace").strip()
    return Path(printed) if result.returncode == 0 and printed else None
