"""Where the node tier cannot run, it says why in one line (and never starts to prepare)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node import conftest


def test_without_root_the_reason_is_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("platform.system", lambda: "Linux")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    reason = conftest.prepare(tmp_path)
    assert reason == "needs root (it makes a network namespace, mounts and cgroups)"
    assert not list(tmp_path.iterdir()), "nothing is installed or built for a run that skips"


def test_off_linux_the_reason_is_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    assert conftest.prepare(tmp_path) == "needs Linux (network namespaces, cgroups, containerd)"


def test_a_failed_package_install_is_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = tmp_path / "install-packages.sh"
    script.write_text("#!/bin/sh\necho 'E: Unable to locate package containerd' >&2\nexit 100\n")
    script.chmod(0o755)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr(conftest, "PACKAGES_SCRIPT", script)
    logs = tmp_path / "logs"
    logs.mkdir()
    assert conftest.prepare(logs) == (
        "Debian packages could not be installed: E: Unable to locate package containerd"
    )


def test_required_means_fail_not_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(conftest.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="node tier required"):
        conftest._unavailable("needs root")
    monkeypatch.delenv(conftest.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="node tier skipped: needs root"):
        conftest._unavailable("needs root")
