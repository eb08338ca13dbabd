"""tools/deploy/*.sh: the tool installer's contract, the self-signed certificate writer and
the deploy script (with a recording stand-in for kubectl; no cluster is needed)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.deploy.rendering import MANIFESTS, WEBHOOK_COMMAND, Renderer, container, one, parse
from tests.deploy.tools import INSTALL_SCRIPT, REPO, Tools
from tests.support.ports import free_port

SCRIPTS = REPO / "tools" / "deploy"
SELF_SIGNED = SCRIPTS / "self-signed.sh"
DEPLOY = SCRIPTS / "deploy.sh"


def _script(
    *argv: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "POD_IDENTITY_WEBHOOK": str(WEBHOOK_COMMAND), **(env or {})},
        timeout=120,
    )


def _pins() -> dict[str, str]:
    result = _script(INSTALL_SCRIPT, "--versions")
    assert result.returncode == 0, result.stderr
    return dict(line.split() for line in result.stdout.splitlines())


# --- install-tools.sh -----------------------------------------------------------------------


def test_tools_go_to_a_cache_outside_the_repository(tmp_path: Path) -> None:
    printed = _script(
        INSTALL_SCRIPT, "--print-dir", env={"POD_IDENTITY_WEBHOOK_CACHE": str(tmp_path)}
    )
    assert printed.stdout.strip() == str(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if k != "POD_IDENTITY_WEBHOOK_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    result = subprocess.run(
        [str(INSTALL_SCRIPT), "--print-dir"], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == str(tmp_path / "xdg" / "pod-identity-webhook" / "bin")
    assert not Path(result.stdout.strip()).is_relative_to(REPO)


def test_tool_versions_are_pinned_exactly() -> None:
    pins = _pins()
    assert set(pins) == {"kustomize", "helm", "hadolint", "shellcheck", "kind"}
    for version in pins.values():
        assert version.lstrip("v")[0].isdigit()
        assert version.count(".") == 2


def test_installer_refuses_unknown_tools() -> None:
    result = _script(INSTALL_SCRIPT, "kubectl")
    assert result.returncode != 0
    assert "unknown argument: kubectl" in result.stderr


def test_installed_tools_report_the_pinned_versions(deploy_tools: Tools) -> None:
    if not deploy_tools.how.startswith("tools/deploy/install-tools.sh"):
        pytest.skip(f"tools came from {deploy_tools.how or 'nowhere'}, not the installer")
    pins = _pins()
    commands = {
        "kustomize": ["version"],
        "helm": ["version", "--template", "{{.Version}}"],
        "hadolint": ["--version"],
        "shellcheck": ["--version"],
    }
    for name, path in deploy_tools.paths.items():
        output = subprocess.run(
            [str(path), *commands[name]], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert pins[name] in output, f"{name}: {output}"


# --- self-signed.sh -------------------------------------------------------------------------


def _bundle(out: Path) -> list[x509.Certificate]:
    patch = yaml.safe_load((out / "ca-bundle.yaml").read_text(encoding="utf-8"))
    assert patch["kind"] == "MutatingWebhookConfiguration"
    assert patch["metadata"]["name"] == "pod-identity-webhook"
    (hook,) = patch["webhooks"]
    assert hook["name"] == "pod-identity-webhook.amazonaws.com"
    return x509.load_pem_x509_certificates(base64.b64decode(hook["clientConfig"]["caBundle"]))


def test_self_signed_script_writes_a_private_key_and_the_ca_bundle(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    result = _script(SELF_SIGNED, "--out", out, "--namespace", "irsa", "--service-name", "piw")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "ca-bundle.yaml",
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    assert _bundle(out) == [ca]
    serving = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "piw.irsa.svc" in names.get_values_for_type(x509.DNSName)
    # No ca.key above: nothing can sign for this CA afterwards.


def test_renewal_trusts_the_previous_ca_for_one_more_run(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    cas = []
    for _ in range(3):
        assert _script(SELF_SIGNED, "--out", out).returncode == 0
        cas.append(x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()))
        bundle = _bundle(out)
        assert bundle[0] == cas[-1]
        assert bundle[1:] == cas[-2:-1]
    assert len({ca.serial_number for ca in cas}) == 3


def test_self_signed_script_refuses_names_that_are_no_service(tmp_path: Path) -> None:
    result = _script(SELF_SIGNED, "--out", tmp_path / "generated", "--namespace", "Not_Valid")
    assert result.returncode != 0
    assert "namespace" in result.stderr
    assert not (tmp_path / "generated").exists()


# --- deploy.sh ------------------------------------------------------------------------------


def _fake_kubectl(tmp_path: Path) -> tuple[Path, Path]:
    """A kubectl that records each call's arguments and the objects of its -f file."""
    record = tmp_path / "calls.log"
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> "{record}"\n'
        'while [ "$#" -gt 0 ]; do\n'
        f'  if [ "$1" = -f ]; then grep "^kind: " "$2" | tr "\\n" " " >> "{record}"; '
        f'echo >> "{record}"; fi\n'
        "  shift\n"
        "done\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    return fake, record


def _manifests_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("generated"))
    return copy


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("pod-identity-webhook:dev", "pod-identity-webhook:dev"),
        ("registry.local:5000/team/piw:1.2", "registry.local:5000/team/piw:1.2"),
        ("piw@sha256:" + "b" * 64, "piw@sha256:" + "b" * 64),
    ],
)
def test_deploy_script_renders_the_overlay_with_the_image(
    kustomize: Path, image: str, expected: str
) -> None:
    result = _script(
        DEPLOY,
        "render",
        "--overlay",
        "cert-manager",
        "--image",
        image,
        env={"KUSTOMIZE": str(kustomize)},
    )
    assert result.returncode == 0, result.stderr
    deployment = one(parse(result.stdout), "Deployment")
    assert container(deployment)["image"] == expected


def test_deploy_script_writes_no_file_into_the_repository(kustomize: Path) -> None:
    before = sorted(p for p in (REPO / "manifests").rglob("*") if "generated" not in p.parts)
    result = _script(
        DEPLOY, "render", "--overlay", "upstream-compatible", env={"KUSTOMIZE": str(kustomize)}
    )
    assert result.returncode == 0, result.stderr
    assert (
        sorted(p for p in (REPO / "manifests").rglob("*") if "generated" not in p.parts) == before
    )


def test_deploy_script_makes_self_signed_certificates_when_missing(
    kustomize: Path, tmp_path: Path
) -> None:
    overlay = _manifests_copy(tmp_path) / "overlays" / "self-signed"
    result = _script(DEPLOY, "render", "--overlay", overlay, env={"KUSTOMIZE": str(kustomize)})
    assert result.returncode == 0, result.stderr
    assert (overlay / "generated" / "ca-bundle.yaml").exists()
    one(parse(result.stdout), "Secret", "pod-identity-webhook-cert")


def test_apply_and_delete_go_through_kubectl_webhook_configuration_deleted_first(
    kustomize: Path, tmp_path: Path, renderer: Renderer
) -> None:
    kubectl, record = _fake_kubectl(tmp_path)
    env = {"KUSTOMIZE": str(kustomize), "KUBECTL": str(kubectl)}
    applied = _script(
        DEPLOY, "apply", "--overlay", "cert-manager", "--context", "kind-x", "--wait", env=env
    )
    assert applied.returncode == 0, applied.stderr
    deleted = _script(DEPLOY, "delete", "--overlay", "cert-manager", "--", "--wait=false", env=env)
    assert deleted.returncode == 0, deleted.stderr
    lines = record.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("apply --context kind-x -f ")
    rendered = renderer.kustomize_build(MANIFESTS / "overlays" / "cert-manager")
    assert lines[1].count("kind:") == len(rendered)
    assert lines[2] == (
        "rollout status --context kind-x -n pod-identity-webhook "
        "deployment/pod-identity-webhook --timeout=180s"
    )
    assert lines[3].startswith("delete --wait=false --ignore-not-found -f ")
    assert lines[4].strip() == "kind: MutatingWebhookConfiguration"
    assert lines[5].startswith("delete --wait=false --ignore-not-found -f ")
    assert "MutatingWebhookConfiguration" not in lines[6]
    assert "kind: Deployment" in lines[6]


def _shell_scripts() -> list[Path]:
    """Every committed file that is a shell script: *.sh, or a sh/bash shebang (.ci/run)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, check=True, cwd=REPO, timeout=30
    ).stdout.decode()
    scripts = []
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            first = handle.readline()
        if name.endswith(".sh") or re.match(rb"#!\S*(/env )?\S*\b(ba)?sh\b", first):
            scripts.append(path)
    return sorted(scripts)


def test_every_shell_script_passes_shellcheck(shellcheck: Path) -> None:
    """Required in CI (install-tools.sh installs shellcheck like the other tools)."""
    scripts = _shell_scripts()
    assert {SCRIPTS / "install-tools.sh", REPO / ".ci" / "run"} <= set(scripts)
    # -x from the top: scripts that source tools/lib/gobuild.sh are checked with it.
    result = subprocess.run(
        [str(shellcheck), "-x", *(str(s.relative_to(REPO)) for s in scripts)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout


def test_shellcheck_finds_what_it_is_for(shellcheck: Path, tmp_path: Path) -> None:
    """The installed binary really checks: an unquoted variable is reported."""
    script = tmp_path / "bad.sh"
    script.write_text("#!/bin/sh\nrm $1\n", encoding="utf-8")
    result = subprocess.run(
        [str(shellcheck), str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert "SC2086" in result.stdout


def test_kind_up_stops_early_without_a_docker_engine(tmp_path: Path) -> None:
    """kind-up.sh needs Docker (not here, nor in CI); it says so before touching anything."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    fake.chmod(0o755)
    result = _script(SCRIPTS / "kind-up.sh", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert result.returncode != 0
    assert "the Docker engine does not answer" in result.stderr


# --- Makefile targets that call these tools ------------------------------------------------


def _make(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_make_request_without_a_server_shows_curls_error_only() -> None:
    result = _make("-s", "request", f"PORT={free_port()}")  # nothing listens there
    assert result.returncode != 0
    assert "curl: (" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _stand_ins(tmp_path: Path, docker_status: int, kind: bool) -> dict[str, str]:
    """PATH with a docker (exiting docker_status) and optionally a recording kind; no cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\nexit {docker_status}\n", encoding="utf-8")
    if kind:
        (bin_dir / "kind").write_text(
            f'#!/bin/sh\necho "$*" > "{tmp_path}/kind.args"\n', encoding="utf-8"
        )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    system = "/usr/local/bin:/usr/bin:/bin"
    if shutil.which("kind", path=system):
        pytest.skip("a kind is installed system-wide; this test needs a machine without one")
    return {"PATH": f"{bin_dir}:{system}", "POD_IDENTITY_WEBHOOK_CACHE": str(tmp_path / "cache")}


def test_kind_down_without_docker_says_so_and_builds_nothing(tmp_path: Path) -> None:
    result = _make("kind-down", env=_stand_ins(tmp_path, docker_status=1, kind=False))
    assert result.returncode != 0
    assert "the Docker engine does not answer" in result.stderr
    assert "building" not in result.stderr
    assert not (tmp_path / "cache" / "bin" / "kind").exists()


def test_kind_down_without_kind_says_so_and_builds_nothing(tmp_path: Path) -> None:
    result = _make("kind-down", env=_stand_ins(tmp_path, docker_status=0, kind=False))
    assert result.returncode != 0
    assert "kind is not installed" in result.stderr
    assert not (tmp_path / "cache" / "bin" / "kind").exists()


def test_kind_down_deletes_the_cluster_with_kind(tmp_path: Path) -> None:
    env = _stand_ins(tmp_path, docker_status=0, kind=True)
    result = _make("kind-down", "KIND_CLUSTER=piw-test", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kind.args").read_text() == "delete cluster --name piw-test\n"
