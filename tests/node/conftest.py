"""Fixtures of the node tier: one node per session, the webhook deployed on it from the
project's manifests and image, and a moto STS endpoint for the Pods.

Preparation (Debian packages, the Kubernetes binaries, the images) runs once the test items are
known, outside any test's timeout. Without root, or when a part cannot be had, every test of
the tier is skipped with one line that says why, unless POD_IDENTITY_WEBHOOK_REQUIRE_NODE=1
(CI), which makes it fail instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.tools import find_tools
from tests.e2e.processes import child_environment
from tests.node import images as image_builds
from tests.node.deployment import Deployed, deploy_webhook
from tests.node.machine import sweep
from tests.node.node import Binaries, Node
from tests.node.sts import StsEndpoint
from tests.support.logs import log_directory

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REQUIRE_ENV = "POD_IDENTITY_WEBHOOK_REQUIRE_NODE"
PACKAGES_SCRIPT = REPO / "tools" / "node" / "install-packages.sh"
KUBE_BUILD = REPO / "tools" / "kube" / "build.sh"
LOCK_FILE = Path("/run/lock/pod-identity-webhook-node-tier.lock")


@dataclass(frozen=True)
class Prepared:
    binaries: Binaries
    images: image_builds.Images
    kustomize: Path
    moto_python: Path
    seconds: float


PREPARED = pytest.StashKey[Prepared | str]()
NODE = pytest.StashKey[Node]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "node: runs on a real kubelet and containerd in a node namespace (tests/node)"
    )


def _cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(os.environ.get("POD_IDENTITY_WEBHOOK_CACHE", default / "pod-identity-webhook"))


def _log_dir(config: pytest.Config) -> Path:
    return log_directory(config, "node")


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def moto_environment(logs: Path) -> Path:
    """moto's server in a virtual environment of its own (requirements/moto.txt: its botocore
    and the webhook's kubernetes client want different python-dateutil majors)."""
    lock = REPO / "requirements" / "moto.txt"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    venv = _cache_root() / "node-tools" / f"moto-{digest}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    partial = venv.with_name(venv.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with (logs / "moto.log").open("wb") as log:
        for argv in (
            [sys.executable, "-m", "venv", str(partial)],
            [
                str(partial / "bin" / "pip"),
                "install",
                "--quiet",
                "--require-hashes",
                "--no-deps",
                "-r",
                str(lock),
            ],
        ):
            subprocess.run(argv, stdout=log, stderr=log, check=True, timeout=900)
    partial.rename(venv)
    return python


def _host_problem(logs: Path) -> str | None:
    """Why this host cannot run a node (one line), after installing its Debian packages."""
    if platform.system() != "Linux":
        return "needs Linux (network namespaces, cgroups, containerd)"
    if os.geteuid() != 0:
        return "needs root (it makes a network namespace, mounts and cgroups)"
    with (logs / "packages.log").open("wb") as log:
        installed = subprocess.run(
            [str(PACKAGES_SCRIPT)], stdout=log, stderr=log, check=False, timeout=1200
        )
    if installed.returncode != 0:
        return f"Debian packages could not be installed: {_last_line(logs / 'packages.log')}"
    if shutil.which("go") is None:
        return "Go is needed to build the kubelet, the control plane and the sandbox image"
    return None


def prepare(logs: Path) -> Prepared | str:
    """Everything the node needs, or why it cannot be had (one line)."""
    started = time.monotonic()
    problem = _host_problem(logs)
    if problem is not None:
        return problem
    # The images and moto's environment (mostly downloads and unpacking) are made while the
    # Go build (mostly CPU) runs: a cold run's longest steps overlap.
    with ThreadPoolExecutor(2, thread_name_prefix="node-prepare") as pool:
        images_made = pool.submit(
            image_builds.build_all,
            _cache_root() / "node-images",
            logs / "images.log",
            logs / "work",
        )
        moto_made = pool.submit(moto_environment, logs)
        with (logs / "kube-build.log").open("wb") as log:
            built = subprocess.run(
                [str(KUBE_BUILD)], stdout=subprocess.PIPE, stderr=log, check=False, timeout=3600
            )
        tools = find_tools(logs / "install-tools.log")
        try:
            moto = moto_made.result()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            return f"moto could not be installed: {exc} (see {logs / 'moto.log'})"
        try:
            images = images_made.result()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"image build failed: {exc}"
    lines = built.stdout.decode(errors="replace").split()
    if built.returncode != 0 or not lines:
        return f"tools/kube/build.sh failed: {_last_line(logs / 'kube-build.log')}"
    if "kustomize" not in tools.paths:
        return f"no kustomize: {tools.missing.get('kustomize')}"
    return Prepared(
        Binaries(Path(lines[-1])),
        images,
        tools.paths["kustomize"],
        moto,
        time.monotonic() - started,
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or PREPARED in config.stash:
        return
    if not any(item.get_closest_marker("node") for item in session.items):
        return
    logs = _log_dir(config)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"node: preparing packages, binaries and images (log: {logs})")
    config.stash[PREPARED] = prepare(logs)


def _unavailable(found: Prepared | str) -> None:
    if isinstance(found, str):
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"node tier required ({REQUIRE_ENV}=1) but {found}", pytrace=False)
        pytest.skip(f"node tier skipped: {found}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    found = item.config.stash.get(PREPARED, None)
    if found is not None and item.get_closest_marker("node"):
        _unavailable(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    node = item.config.stash.get(NODE, None)
    if report.failed and node is not None and item.get_closest_marker("node"):
        report.sections.append(("node process logs", node.log_tails()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    found = config.stash.get(PREPARED, None)
    node = config.stash.get(NODE, None)
    if isinstance(found, Prepared):
        terminalreporter.write_line(
            f"node: prepared in {found.seconds:.0f} s; images {found.images.webhook}, "
            f"{found.images.aws_client}"
        )
    if node is not None:
        terminalreporter.write_line(
            f"node: Ready in {node.ready_seconds:.1f} s; logs in {node.workdir}"
        )


@pytest.fixture(scope="session")
def prepared(request: pytest.FixtureRequest) -> Prepared:
    config = request.config
    if PREPARED not in config.stash:
        config.stash[PREPARED] = prepare(_log_dir(config))
    found = config.stash[PREPARED]
    _unavailable(found)
    assert isinstance(found, Prepared)
    return found


# Package scope, not session: the node is undone in the teardown of the tier's last test, under
# that test's generous timeout, rather than in whichever test of the session happens to run last.
@pytest.fixture(scope="package")
def node(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The node, alone on the machine (a lock file), undone afterwards."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for done in sweep():
            print(f"node: {done}")
        workdir = tmp_path_factory.mktemp("node")
        env = child_environment()
        node = Node(prepared.binaries, workdir, env)
        no_proxy = node.addresses.no_proxy()
        env.update(NO_PROXY=no_proxy, no_proxy=no_proxy)
        with pytest.MonkeyPatch.context() as patch:
            for name in ("NO_PROXY", "no_proxy"):
                patch.setenv(name, no_proxy)
            patch.setattr(node, "env", env)
            try:
                node.start(images=prepared.images.archives)
                yield node
            finally:
                node.close()
        leftovers = node.leftovers()
        assert not node.cleanup_problems, node.cleanup_problems
        assert not leftovers, f"the node tier left: {leftovers}"


@pytest.fixture(scope="package")
def webhook(node: Node, prepared: Prepared, request: pytest.FixtureRequest) -> Deployed:
    request.config.stash[NODE] = node
    return deploy_webhook(node, prepared.images.webhook, prepared.kustomize)


@pytest.fixture(scope="package")
def sts(node: Node, prepared: Prepared) -> Iterator[StsEndpoint]:
    endpoint = StsEndpoint(
        node.addresses.host_ip, node.workdir / "sts", node.env, prepared.moto_python
    )
    try:
        endpoint.start()
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture(scope="session")
def images(prepared: Prepared) -> image_builds.Images:
    return prepared.images
