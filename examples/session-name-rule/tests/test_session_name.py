"""The example rule, loaded the way the webhook loads it: by its entry-point name."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml

from webhook.admission.rules import load_rule
from webhook.cli import run

SERVICE_ACCOUNTS = """\
kind: ServiceAccount
metadata:
  name: app
  namespace: default
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/app"}
"""
POD = """\
kind: Pod
metadata: {generateName: web-, namespace: default}
spec:
  serviceAccountName: app
  containers: [{name: web, image: nginx}, {name: skip-me, image: sidecar}]
"""


def test_the_installed_entry_point_loads() -> None:
    rule = load_rule("session-name")
    assert rule.function.__module__ == "pod_identity_session_name"


def mutate(tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    (tmp_path / "sa.yaml").write_text(SERVICE_ACCOUNTS)
    (tmp_path / "pod.yaml").write_text(POD)
    out = io.StringIO()
    argv = [
        "mutate",
        "-f",
        str(tmp_path / "pod.yaml"),
        "--service-accounts",
        str(tmp_path / "sa.yaml"),
        "-o",
        "pod",
        *extra,
    ]
    assert run(argv, stdout=out, stderr=io.StringIO()) == 0
    containers: list[dict[str, Any]] = yaml.safe_load(out.getvalue())["spec"]["containers"]
    return containers


def test_every_injected_container_gets_the_session_name_from_the_downward_api(
    tmp_path: Path,
) -> None:
    containers = mutate(tmp_path, "--rule", "session-name")
    env = containers[0]["env"]
    assert env[-1] == {
        "name": "AWS_ROLE_SESSION_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert [e["name"] for e in env[:-1]] == ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]


def test_skipped_containers_get_nothing(tmp_path: Path) -> None:
    mutate(tmp_path)  # writes the files
    pod = POD.replace(
        "metadata: {", "metadata: {annotations: {eks.amazonaws.com/skip-containers: skip-me}, "
    )
    (tmp_path / "pod.yaml").write_text(pod)
    out = io.StringIO()
    argv = [
        "mutate",
        "-f",
        str(tmp_path / "pod.yaml"),
        "--service-accounts",
        str(tmp_path / "sa.yaml"),
        "--rule",
        "session-name",
        "-o",
        "patch",
    ]
    assert run(argv, stdout=out, stderr=io.StringIO()) == 0
    paths = [op["path"] for op in json.loads(out.getvalue())]
    assert not any(p.startswith("/spec/containers/1") for p in paths)


def test_without_the_flag_the_rule_does_not_run(tmp_path: Path) -> None:
    containers = mutate(tmp_path)
    assert all(e["name"] != "AWS_ROLE_SESSION_NAME" for e in containers[0]["env"])
