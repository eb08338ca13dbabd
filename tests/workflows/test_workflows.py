"""The GitHub Actions workflows of examples/workflows (issue 17, part 3). They cannot run here
(no GitHub runner, no Docker engine); what can be checked is: actionlint, with shellcheck on
every `run:` script; the manifest check's own command, run here on this repository's examples;
and the kind workflow against the recipe of docs/local-sts.md, so the two cannot drift. The
chart side of the kind workflow (its `helm install` values) is rendered in tests/deploy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.workflows.conftest import REPO, Actionlint

WORKFLOWS = REPO / "examples" / "workflows"
CHECK = WORKFLOWS / "check-manifests.yaml"
KIND = WORKFLOWS / "kind-credentials.yaml"
LOCAL_STS = REPO / "docs" / "local-sts.md"


def load(path: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return workflow


def step(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    (job,) = workflow["jobs"].values()
    (found,) = [s for s in job["steps"] if s.get("name") == name]
    return dict(found)


def test_the_example_workflows_pass_actionlint(actionlint: Actionlint) -> None:
    files = sorted(WORKFLOWS.glob("*.yaml"))
    assert files == [CHECK, KIND]
    result = actionlint.run(*files)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_and_its_shellcheck_find_mistakes(actionlint: Actionlint, tmp_path) -> None:
    """The checker really checks: an unknown context property, and an unquoted variable that
    only shellcheck reports."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ github.evnt_name }}\n"
        "      - run: rm $TARGET\n",
        encoding="utf-8",
    )
    result = actionlint.run(broken)
    assert result.returncode == 1
    assert 'property "evnt_name" is not defined' in result.stdout
    assert "SC2086" in result.stdout


# --- check-manifests.yaml: its command, run on this repository's examples -------------------


def _run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    workflow = load(CHECK)
    (job,) = workflow["jobs"].values()
    script = step(workflow, "Admit every Pod offline against the policy")["run"]
    variables = {name: str(REPO / value) for name, value in job["env"].items() if name != "WEBHOOK"}
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, **variables, **env, "PATH": path},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_manifest_check_passes_on_the_examples(tmp_path) -> None:
    result = _run_check(tmp_path)
    assert result.returncode == 0, result.stderr
    printed = (tmp_path / "patches.json").read_text(encoding="utf-8")
    # One patch per document of examples/manifests/shop.yaml: ServiceAccount, Deployment,
    # Service, CronJob.
    assert re.findall(r'"path": "(/spec/[^"]*?)/spec/volumes"', printed) == [
        "/spec/template",
        "/spec/jobTemplate/spec/template",
    ]
    assert "== " in result.stderr  # -v explains each Pod in the job's log


def test_the_manifest_check_fails_the_job_on_a_denial(tmp_path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "rules:\n  - {name: shop-admins-only, namespaces: [shop], mode: enforce, "
        "roleArns: ['arn:aws:iam::111122223333:role/shop-admin']}\n",
        encoding="utf-8",
    )
    result = _run_check(tmp_path, POLICY=str(strict))
    assert result.returncode == 3
    denials = [line for line in result.stderr.splitlines() if "denied:" in line]
    assert len(denials) == 2  # the Deployment's Pods and the CronJob's
    assert "Deployment shop/web: policy rule 'shop-admins-only' (enforce)" in denials[0]
    assert "CronJob shop/report: policy rule 'shop-admins-only' (enforce)" in denials[1]


# --- kind-credentials.yaml against docs/local-sts.md ---------------------------------------


def _heredoc(text: str, marker: str) -> list[Any]:
    body = re.search(rf"<<'{marker}'\n(.*?)\n\s*{marker}\n", text, re.DOTALL)
    assert body is not None, marker
    lines = body.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return list(yaml.safe_load_all("\n".join(line[indent:] for line in lines)))


def test_the_kind_workflow_runs_the_documented_recipe() -> None:
    workflow = load(KIND)
    doc = LOCAL_STS.read_text(encoding="utf-8")
    moto = step(workflow, "Start moto over HTTPS with a private CA")["run"]
    assert _heredoc(moto, "YAML") == _heredoc(doc, "EOF")
    assert "pod-identity-webhook certs --dir moto-tls --service-name moto --namespace moto" in moto
    assert "pod-identity-webhook certs --dir moto-tls --service-name moto --namespace moto" in doc
    check = step(workflow, "A Pod gets credentials and uses them")["run"]
    image = re.search(r"--image=(\S+)", check)
    assert image is not None
    assert f"--image={image.group(1)}" in doc
    helm = step(workflow, "Install the webhook, pointed at moto")["run"]
    for value in ("certificates.mode=bootstrap", "config.awsDefaultRegion=us-east-1"):
        assert value in helm
        assert value in doc
    assert workflow["env"]["STS"] == "https://moto.moto.svc:5000"
    assert "--sts-endpoint-url=https://moto.moto.svc:5000" in doc
    assert "--ca-bundle-config-map=aws-local-ca" in helm
    assert "--ca-bundle-config-map=aws-local-ca" in doc
