"""Table-driven scenarios: each tests/scenarios/*.yaml runs through the real `mutate` command.

A scenario gives the flags, the ServiceAccounts, the ConfigMap and container-credentials file,
a Pod, and the Pod expected after the patch; optionally the kubectl warnings (all of them, in
order) and audit annotations (those listed) of the answer. Besides equality, every scenario
checks the contract's invariants: only `add` operations, and a second pass over the result adds
nothing.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from webhook.cli import run

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
KEYS = {
    "description",
    "args",
    "namespace",
    "service_accounts",
    "config_map",
    "container_credentials",
    "pod",
    "expect",
}


def lowest(low: int, high: int) -> int:
    return low


def _write(directory: Path, name: str, data: Any) -> str:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def _patch_for(
    scenario: dict[str, Any], pod: dict[str, Any], tmp_path: Path
) -> list[dict[str, Any]]:
    patch: list[dict[str, Any]] = _run(scenario, pod, tmp_path, "patch")
    return patch


def _run(scenario: dict[str, Any], pod: dict[str, Any], tmp_path: Path, output: str) -> Any:
    args = ["-o", output]
    if "service_accounts" in scenario:
        documents = yaml.safe_dump_all(scenario["service_accounts"])
        args += ["--service-accounts", _write(tmp_path, "sa.yaml", documents)]
    if "config_map" in scenario:
        config_map = scenario["config_map"]
        namespace = (config_map.get("metadata") or {}).get("namespace", "default")
        args += ["--watch-config-map", f"--namespace={namespace}"]
        args += ["--config-map", _write(tmp_path, "cm.yaml", config_map)]
    if "container_credentials" in scenario:
        document = scenario["container_credentials"]
        text = (
            document["raw"]
            if isinstance(document, dict) and "raw" in document
            else json.dumps(document)
        )
        args += ["--watch-container-credentials-config", _write(tmp_path, "cc.json", text)]
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "scenario",
            "namespace": scenario.get("namespace")
            or (pod.get("metadata") or {}).get("namespace")
            or "default",
            "object": pod,
        },
    }
    args += ["-f", _write(tmp_path, "review.json", json.dumps(review))]
    args += scenario.get("args", [])  # last, so a scenario can override the runner's flags
    out, err = io.StringIO(), io.StringIO()
    status = run(["mutate", *args], stdout=out, stderr=err, jitter=lowest)
    assert status == 0, err.getvalue()
    return json.loads(out.getvalue())


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, tmp_path: Path) -> None:
    scenario = yaml.safe_load(path.read_text())
    assert set(scenario) <= KEYS, f"unknown keys {set(scenario) - KEYS}"
    pod = scenario["pod"]
    original = copy.deepcopy(pod)
    patch = _patch_for(scenario, pod, tmp_path)

    assert all(op["op"] == "add" for op in patch)
    result = jsonpatch.apply_patch(pod, patch)
    assert pod == original, "the input Pod was modified"
    expect = scenario["expect"]
    assert set(expect) <= {"pod", "unchanged", "warnings", "audit"}
    if expect.get("unchanged"):
        assert patch == []
    else:
        assert result == expect["pod"]
    if "warnings" in expect or "audit" in expect:
        (tmp_path / "review").mkdir()
        response = _run(scenario, pod, tmp_path / "review", "review")["response"]
        assert response.get("warnings", []) == expect.get("warnings", [])
        audit = response["auditAnnotations"]
        assert {key: audit.get(key) for key in expect.get("audit", {})} == expect.get("audit", {})

    # Re-invocation (reinvocationPolicy: IfNeeded) must find nothing left to do.
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    assert _patch_for(scenario, result, again_dir) == []


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 60
