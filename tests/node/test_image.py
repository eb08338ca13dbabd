"""The image built from the Dockerfile, run as a container: its user, a read-only root
filesystem, its commands, and the RULE_PACKAGES build argument."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.node.images import IMAGE_SCRIPT, INPUTS_LABEL, Images
from tests.support.reviews import ROLE
from tests.support.versions import image_version_label, package_version

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _run(image: str, *argv: str, stdin: bytes | None = None, entrypoint: str | None = None) -> str:
    """The container's stdout, with the settings of the Deployment's container: read-only root
    filesystem, the image's own user, nothing from the host but what is mounted."""
    command = [
        str(IMAGE_SCRIPT),
        "run",
        "--rm",
        "-i",
        "--pull=never",
        "--read-only",
        "--network=none",
    ]
    if entrypoint is not None:
        command.append(f"--entrypoint={entrypoint}")
    result = subprocess.run(
        [*command, image, *argv], input=stdin or b"", capture_output=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def _canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runs_as_65532_on_a_read_only_root_filesystem(images: Images) -> None:
    probe = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n"
        "    open('/opt/venv/written', 'w')\n"
        "except OSError as error:\n"
        "    print(error.strerror)\n"
    )
    out = _run(images.webhook, "-c", probe, entrypoint="python")
    assert out.splitlines() == ["65532 65532", "Read-only file system"]


def test_help_and_version(images: Images) -> None:
    # One version (webhook/__init__.py): what the image prints, its label and the package.
    assert _run(images.webhook, "--version").strip() == f"v{package_version()}"
    assert image_version_label(images.webhook) == package_version()
    help_text = _run(images.webhook, "--help")
    assert "--tls-cert" in help_text
    assert "--watch-config-map" in help_text
    # No arguments: the image's CMD is --help.
    assert _run(images.webhook) == help_text


def test_mutate_reads_the_pod_from_stdin(images: Images) -> None:
    patch = json.dumps(json.loads(_mutate(images.webhook)))
    assert ROLE in patch
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in patch


def _mutate(image: str, *extra: str) -> str:
    """`mutate -f -` on dev/pod.yaml with dev/service-accounts.yaml mounted read-only."""
    mount = f"--volume={REPO / 'dev' / 'service-accounts.yaml'}:/sa.yaml:ro,Z"
    command = [
        str(IMAGE_SCRIPT),
        "run",
        "--rm",
        "-i",
        "--pull=never",
        "--read-only",
        "--network=none",
        mount,
        image,
        "mutate",
        "-f",
        "-",
        "--service-accounts",
        "/sa.yaml",
        "-o",
        "patch",
        *extra,
    ]
    result = subprocess.run(
        command,
        input=(REPO / "dev" / "pod.yaml").read_bytes(),
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def test_the_image_has_no_pip_and_is_the_tested_build(images: Images) -> None:
    out = _run(
        images.webhook,
        "-c",
        "import importlib.util as u; print(u.find_spec('pip'), u.find_spec('setuptools'))",
        entrypoint="python",
    )
    assert out.strip() == "None None"
    # The dependencies are the locked versions CI installs (requirements/image.txt).
    listing = (
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)\n"
    )
    installed = {
        _canonical(name) + "==" + version
        for name, version in (
            line.split()
            for line in _run(images.webhook, "-c", listing, entrypoint="python").splitlines()
        )
    }
    locked = {
        _canonical(line.split("==")[0]) + "==" + line.split("==")[1].split()[0]
        for line in (REPO / "requirements" / "image.txt").read_text().splitlines()
        if "==" in line and not line.startswith(("#", " "))
    }
    assert locked <= installed, locked - installed
    label = subprocess.run(
        [str(IMAGE_SCRIPT), "label", images.webhook, INPUTS_LABEL],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert images.webhook.endswith(label)


def test_rule_packages_build_argument(images: Images, tmp_path: Path) -> None:
    """`--build-arg RULE_PACKAGES=./examples/session-name-rule`: the rule is installed and
    `--rule session-name` adds its variable."""
    tag = "localhost/pod-identity-webhook:node-rules"
    result = subprocess.run(
        [
            str(IMAGE_SCRIPT),
            "build",
            "--build-arg",
            f"BASE_IMAGE={images.base}",
            "--build-arg",
            "RULE_PACKAGES=./examples/session-name-rule",
            tag,
        ],
        capture_output=True,
        check=False,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    patch = json.loads(_mutate(tag, "--rule", "session-name"))
    assert "AWS_ROLE_SESSION_NAME" in json.dumps(patch)
    assert "AWS_ROLE_SESSION_NAME" not in _mutate(images.webhook)
