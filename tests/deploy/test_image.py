"""The image's install steps, run without an image builder: the Dockerfile's own pip commands
(see tests/deploy/dockerfile.py) with this host's Python 3.11, then the webhook from the result.

This checks the steps and the layout they produce where no image can be built; the node tier
(tests/node/test_image.py) builds the Dockerfile for real and runs the image. The build
downloads every dependency from the package index, as the image build does, so the module is
marked slow and network; without the index it is skipped with the reason.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.dockerfile import BUILD_STAGE_COMMANDS, FINAL_STAGE_COMMANDS
from tests.deploy.tools import REPO
from tests.support.ports import free_port
from tests.support.reviews import ROLE, decode_patch
from tests.support.versions import package_version

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(900)]

NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Name or service not known|Temporary failure in name resolution|"
    r"Network is unreachable|Connection refused|ProxyError|ConnectTimeout|Read timed out"
)
BUILD_TIMEOUT = 600


@dataclass
class Image:
    """The result of the image's install steps, with temporary paths for /wheels and /opt/venv."""

    root: Path
    wheels: Path
    venv: Path
    env: dict[str, str]

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "pod-identity-webhook"

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
            cwd=self.root / "run",
            timeout=timeout,
        )

    def snapshot(self) -> set[tuple[str, int, int]]:
        """Every file of the installed tree: what a read-only root filesystem would freeze."""
        return {
            (str(path.relative_to(self.venv)), path.stat().st_size, path.stat().st_mtime_ns)
            for path in self.venv.rglob("*")
            if path.is_file()
        }


def _image_env(home: Path) -> dict[str, str]:
    """The environment of the Dockerfile's stages (ENV lines), with a clean HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV")) and k != "KUBECONFIG"
    }
    env.update(
        HOME=str(home),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _step(
    command: str, *, src: Path, wheels: Path, venv: Path, build: Path, env: dict[str, str]
) -> None:
    argv = shlex.split(command.format(src=src, wheels=wheels, venv=venv, build=build))
    if argv[0] == "python":
        argv[0] = sys.executable
    # The shell of the RUN line expands the wheel glob.
    argv = [m for a in argv for m in (sorted(glob.glob(a)) if "*" in a else [a])]  # noqa: PTH207
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=env, timeout=BUILD_TIMEOUT
    )
    output = result.stdout + result.stderr
    network = NETWORK_ERRORS.search(output)
    if result.returncode != 0 and network is not None:
        pytest.skip(
            f"network: the package index is unreachable ({command.split()[3]}): {network.group(0)}"
        )
    assert result.returncode == 0, f"{' '.join(argv)}\n{output[-4000:]}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    src, wheels, venv, home = root / "src", root / "wheels", root / "opt-venv", root / "home"
    build = root / "opt-build"
    for directory in (src, home, root / "run"):
        directory.mkdir()
    # The build context (.dockerignore) and the COPY lines of the build stage.
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copy2(REPO / "README.md", src)
    (src / "requirements").mkdir()
    for name in ("build.txt", "image.txt"):
        shutil.copy2(REPO / "requirements" / name, src / "requirements")
    shutil.copytree(
        REPO / "webhook", src / "webhook", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    env = _image_env(home)
    for command in (*BUILD_STAGE_COMMANDS, *FINAL_STAGE_COMMANDS):
        _step(command, src=src, wheels=wheels, venv=venv, build=build, env=env)
    return Image(root, wheels, venv, env)


def _site_packages(image: Image) -> Path:
    (site,) = image.venv.glob("lib/python3*/site-packages")
    return site


def test_wheels_are_built_for_the_project_and_every_dependency(image: Image) -> None:
    files = sorted(p.name for p in image.wheels.iterdir())
    assert all(name.endswith(".whl") for name in files), files
    assert f"pod_identity_webhook-{package_version()}-py3-none-any.whl" in files
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {name.split("-")[0].lower() for name in files}
    for requirement in project["dependencies"]:
        dependency = re.split(r"[<>=!~ \[]", requirement)[0].lower().replace("-", "_")
        assert dependency in names, requirement


def test_final_environment_has_no_pip_and_left_no_cache(image: Image) -> None:
    assert not (image.venv / "bin" / "pip").exists()
    assert not (_site_packages(image) / "pip").exists()
    # pip's cache would be under HOME; --no-cache-dir left none.
    assert not (Path(image.env["HOME"]) / ".cache").exists()


def test_installed_webhook_is_the_wheel_not_the_checkout(image: Image) -> None:
    result = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", "import webhook; print(webhook.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=image.env,
        cwd=image.root / "run",
        timeout=60,
    )
    assert Path(result.stdout.strip()).is_relative_to(_site_packages(image))
    # Bytecode was compiled at install time, so nothing needs writing at run time.
    assert list((_site_packages(image) / "webhook").glob("__pycache__/*.pyc"))


def test_help_and_version_run_from_the_installed_entry_point(image: Image) -> None:
    help_result = image.run("--help")
    assert help_result.returncode == 0, help_result.stderr
    assert "--tls-cert" in help_result.stdout
    assert "--watch-config-map" in help_result.stdout
    version = image.run("--version")
    assert version.stdout.strip() == f"v{package_version()}"


def test_mutate_injects_the_role_into_the_sample_pod(image: Image) -> None:
    result = image.run(
        "mutate",
        "-f",
        str(REPO / "dev" / "pod.yaml"),
        "--service-accounts",
        str(REPO / "dev" / "service-accounts.yaml"),
        "-o",
        "patch",
    )
    assert result.returncode == 0, result.stderr
    patch = json.loads(result.stdout)
    values = json.dumps(patch)
    assert ROLE in values
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in values


def _https(
    port: int, context: ssl.SSLContext, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_server_runs_from_the_image_layout_without_writing_to_it(image: Image) -> None:
    """The ENTRYPOINT with the Deployment's flags (files instead of the cluster): it serves,
    answers probes and reviews, stops on SIGTERM, and writes nothing into the installed tree,
    as a read-only root filesystem requires."""
    certs = image.root / "certs"
    made = image.run("certs", "--dir", str(certs), "--local")
    assert made.returncode == 0, made.stderr
    before = image.snapshot()
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            str(image.command),
            "--in-cluster=false",
            f"--port={port}",
            f"--metrics-port={metrics_port}",
            "--namespace=pod-identity-webhook",
            f"--tls-cert={certs / 'tls.crt'}",
            f"--tls-key={certs / 'tls.key'}",
            "--annotation-prefix=eks.amazonaws.com",
            "--token-audience=sts.amazonaws.com",
            f"--service-accounts={REPO / 'dev' / 'service-accounts.yaml'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=image.env,
        cwd=image.root / "run",
    )
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, _ = _https(port, context, "GET", "/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, "the webhook never became ready"
        assert _https(port, context, "GET", "/healthz") == (200, b"ok")
        review = (REPO / "dev" / "review.json").read_bytes()
        status, body = _https(port, context, "POST", "/mutate", review)
        assert status == 200, body
        answer = json.loads(body)["response"]
        assert ROLE in json.dumps(decode_patch(answer))
        connection = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
        connection.request("GET", "/metrics")
        metrics = connection.getresponse()
        assert metrics.status == 200
        assert b"pod_identity_webhook_pod_count" in metrics.read()
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert image.snapshot() == before
