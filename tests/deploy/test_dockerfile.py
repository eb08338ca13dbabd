"""The Dockerfile's rules, read from the file (no Docker engine is needed), and hadolint."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy import dockerfile
from tests.deploy.dockerfile import (
    BUILD_STAGE_COMMANDS,
    DOCKERFILE,
    FINAL_STAGE_COMMANDS,
    VENV,
    in_image,
)
from tests.deploy.rendering import MANIFESTS
from tests.deploy.tools import REPO

PYTHON_IMAGE = re.compile(r"^python:(3\.\d+)\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}$")
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cargo", "rustc")
OCI_LABELS = ("title", "description", "version", "revision", "created", "licenses")


@pytest.fixture(scope="module")
def parsed() -> dockerfile.Dockerfile:
    return dockerfile.read()


def _final(parsed: dockerfile.Dockerfile) -> dockerfile.Stage:
    return parsed.stages[-1]


def test_build_is_multi_stage_with_wheels_built_first(parsed: dockerfile.Dockerfile) -> None:
    assert len(parsed.stages) == 2
    build, final = parsed.stages
    assert build.name == "build"
    assert final.name is None
    assert build.base == final.base


def test_base_is_a_slim_python_pinned_by_digest(parsed: dockerfile.Dockerfile) -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "requires-python"
    ]
    for stage in parsed.stages:
        image = parsed.resolve(stage.base)
        match = PYTHON_IMAGE.match(image)
        assert match, f"{image} is not python:X.Y.Z-slim[-distro]@sha256:..."
        # The interpreter the project is developed and tested with (requires-python >=3.11).
        assert match.group(1) == "3.11"
        assert requires == ">=3.11"


def test_dockerfile_runs_the_tested_install_commands(parsed: dockerfile.Dockerfile) -> None:
    """test_image.py runs these very commands; they must not drift apart."""
    build, final = parsed.stages
    for command in BUILD_STAGE_COMMANDS:
        assert in_image(command) in build.runs()
    for command in FINAL_STAGE_COMMANDS:
        assert in_image(command) in final.runs()


def test_wheels_reach_the_final_stage_by_bind_mount_only(parsed: dockerfile.Dockerfile) -> None:
    final = _final(parsed)
    assert not [c for c in final.all("COPY") if "--from" in c.value]
    (install,) = final.all("RUN")
    assert install.value.startswith("--mount=type=bind,from=build,source=/wheels,target=/wheels")
    assert parsed.directives[0].startswith("syntax=docker/dockerfile:1")


def test_final_stage_has_no_compiler_pip_or_cache(parsed: dockerfile.Dockerfile) -> None:
    final = _final(parsed)
    runs = final.runs()
    assert "apt-get" not in runs
    for word in COMPILERS:
        assert not re.search(rf"(^|\s){re.escape(word)}(\s|$)", runs), word
    assert "--no-cache-dir" in runs
    assert "--no-index" in runs
    assert "pip uninstall --yes pip setuptools wheel" in runs
    assert "rm -rf /root/.cache" in runs
    assert not final.all("ADD")


def test_runs_as_a_numeric_non_root_user(parsed: dockerfile.Dockerfile) -> None:
    final = _final(parsed)
    (user,) = final.all("USER")
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    assert final.instructions.index(user) > final.instructions.index(final.all("RUN")[-1])
    # The manifests run the Pod as the same user.
    deployment = yaml.safe_load(
        (MANIFESTS / "base" / "deployment.yaml").read_text(encoding="utf-8")
    )
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_entrypoint_is_the_webhook_in_exec_form(parsed: dockerfile.Dockerfile) -> None:
    final = _final(parsed)
    (entrypoint,) = final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == [f"{VENV}/bin/pod-identity-webhook"]
    (cmd,) = final.all("CMD")
    assert cmd.exec_form() == ["--help"]


def test_environment_suits_a_read_only_root_filesystem(parsed: dockerfile.Dockerfile) -> None:
    env: dict[str, str] = {}
    for instruction in _final(parsed).all("ENV"):
        env.update(instruction.pairs())
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # The Deployment mounts an emptyDir at /tmp; nothing else is writable.
    assert env["HOME"] == "/tmp"


def test_image_carries_oci_labels(parsed: dockerfile.Dockerfile) -> None:
    labels: dict[str, str] = {}
    for instruction in _final(parsed).all("LABEL"):
        labels.update(instruction.pairs())
    for name in OCI_LABELS:
        assert f"org.opencontainers.image.{name}" in labels, name
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == "pod-identity-webhook"


def test_exposed_ports_are_the_manifests_ports(parsed: dockerfile.Dockerfile) -> None:
    (expose,) = _final(parsed).all("EXPOSE")
    assert expose.value.split() == ["8443", "9999"]


def test_build_context_is_only_what_the_wheel_is_made_of(parsed: dockerfile.Dockerfile) -> None:
    patterns = dockerfile.ignore_patterns()
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "requirements/build.txt",
        "requirements/image.txt",
        "webhook",
        "examples",
    }
    # The example rules' tests are no part of any image.
    assert "examples/*/tests/" in patterns
    copied: set[str] = set()
    for instruction in parsed.stages[0].all("COPY"):
        *sources, _ = instruction.value.split()
        copied.update(source.rstrip("/") for source in sources)
    assert copied == allowed
    for source in copied:
        assert (REPO / source).exists()


def test_hadolint_finds_nothing(hadolint: Path) -> None:
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_an_unpinned_root_image(hadolint: Path, tmp_path: Path) -> None:
    """The lint above is not vacuous: the rules it applies reject the usual mistakes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\nUSER root\n", encoding="utf-8")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, result.stdout
