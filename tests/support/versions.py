"""Where the version shows, read the way a user or a tool reads it there.

webhook/__init__.py is the only place it is written; tests/test_project.py checks that every
other place agrees with it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from webhook import __version__

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pod-identity-webhook" / "Chart.yaml"
#: The OCI label the Dockerfile sets from its VERSION build argument.
VERSION_LABEL = "org.opencontainers.image.version"


def package_version() -> str:
    return __version__


def pyproject_version_source() -> str:
    """What pyproject.toml takes the version from (it must not write one of its own)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "pyproject.toml writes a version of its own"
    assert "version" in project["project"].get("dynamic", []), "the version is not dynamic"
    source: str = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    return source


def chart_app_version() -> str:
    chart = yaml.safe_load(CHART.read_text(encoding="utf-8"))
    return str(chart["appVersion"])


def cli_version() -> str:
    """`pod-identity-webhook --version` as the installed console script prints it, without
    the leading v (upstream's format is `v0.1.0`)."""
    script = Path(sys.executable).with_name("pod-identity-webhook")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "webhook"]
    done = subprocess.run(
        [*argv, "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    printed = done.stdout.strip()
    assert printed.startswith("v"), printed
    return printed.removeprefix("v")


def image_version_label(image: str) -> str:
    """The `org.opencontainers.image.version` label of a built image, read through
    tools/image/image.sh (whichever builder it found: docker, podman or buildah). The node
    tier builds the image for real and checks it with this."""
    done = subprocess.run(
        [str(REPO / "tools" / "image" / "image.sh"), "label", image, VERSION_LABEL],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()
