"""The project's own files agree with each other: one version everywhere, hooks that only call
the Makefile, metadata that says what the project is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from tests.support.versions import (
    chart_app_version,
    cli_version,
    package_version,
    pyproject_version_source,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_version_is_written_once_and_read_by_the_package_metadata():
    assert pyproject_version_source() == "webhook.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[-.]?(?:a|b|rc|dev)\d+)?", package_version())


def test_the_charts_app_version_and_version_flag_agree_with_the_package():
    assert chart_app_version() == package_version()
    assert cli_version() == package_version()


def test_the_image_is_labelled_with_the_package_version_by_default():
    # The build argument's default feeds the org.opencontainers.image.version label; the node
    # tier (tests/node/test_image.py) reads the label of the image it builds.
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^ARG VERSION=(\S+)$", dockerfile, flags=re.MULTILINE) == [package_version()]


def test_the_changelog_keeps_an_unreleased_section_first():
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert versions[0] == "Unreleased"


def _makefile_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))


def test_pre_commit_hooks_are_local_and_only_call_makefile_targets():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    targets = _makefile_targets()
    hooks = []
    for repository in config["repos"]:
        assert repository["repo"] == "local", "no hook repository is fetched"
        hooks.extend(repository["hooks"])
    assert hooks
    for hook in hooks:
        assert hook["language"] == "system", hook["id"]
        assert hook["pass_filenames"] is False, hook["id"]
        command, *arguments = hook["entry"].split()
        assert command == "make", hook["id"]
        assert arguments, hook["id"]
        assert set(arguments) <= targets, hook["id"]


def test_pyproject_names_the_project_for_an_index():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    urls = project["urls"]
    assert {"Homepage", "Source", "Issues", "Changelog", "Security", "Upstream"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert "Typing :: Typed" in project["classifiers"]
    assert (REPO / "webhook" / "py.typed").exists()


def test_every_tier_ci_requires_is_documented_and_read_by_a_tier():
    # A REQUIRE variable CI sets that no tier reads would make a skip look required; one the
    # guide lists that CI does not set would promise a failure CI never sees.
    name = r"POD_IDENTITY_WEBHOOK_REQUIRE_[A-Z_]+"
    ci = set(re.findall(rf"^export ({name})=1$", (REPO / ".ci/run").read_text(), re.MULTILINE))
    guide = set(re.findall(rf"`({name})=1`", (REPO / "CONTRIBUTING.md").read_text()))
    assert ci, "no REQUIRE variable in .ci/run"
    assert ci == guide
    read = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("*.py"))
    assert all(variable in read for variable in ci)
