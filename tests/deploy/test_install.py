"""`make install`'s editable install, in a fresh virtual environment: quiet and importable.

pip builds the editable wheel in an isolated environment with setuptools from the package
index, so the module is marked slow and network; without the index it is skipped with the
reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_image import NETWORK_ERRORS
from tests.deploy.tools import REPO

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(600)]


def test_editable_install_prints_no_warning_and_imports_the_checkout(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The install target's steps: a current pip (which shows the build backend's warnings),
    # then the editable install (without --quiet, so that nothing is hidden).
    output = ""
    for argv in (["install", "--upgrade", "pip"], ["install", "--no-deps", "-e", str(REPO)]):
        result = subprocess.run(
            [str(venv / "bin" / "pip"), *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            timeout=480,
        )
        output = result.stdout + result.stderr
        network = NETWORK_ERRORS.search(output)
        if result.returncode != 0 and network is not None:
            pytest.skip(f"network: the package index is unreachable: {network.group(0)}")
        assert result.returncode == 0, output
    for warning in ("BuildBackendWarning", "Editable installation", "!!"):
        assert warning not in output, output
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import webhook; print(webhook.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    ).stdout.strip()
    assert Path(where) == REPO / "webhook" / "__init__.py"
    assert re.search(r"Successfully installed pod-identity-webhook", output), output
