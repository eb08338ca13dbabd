"""Shared builders and small tools for the HTTP tier (imported by the test modules)."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import jsonpatch
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::111122223333:role/s3-reader"
OTHER_ROLE = "arn:aws:iam::111122223333:role/other"
UID = "918ef1dc-928f-4525-99ef-988389f263c3"
PREFIX = "eks.amazonaws.com"
TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
JSON = {"Content-Type": "application/json"}

#: The ServiceAccounts of dev/service-accounts.yaml, as store items.
SERVICE_ACCOUNTS: list[tuple[str, str, dict[str, Any] | None]] = [
    (
        "default",
        "s3-reader",
        {
            f"{PREFIX}/role-arn": ROLE,
            f"{PREFIX}/sts-regional-endpoints": "true",
            f"{PREFIX}/token-expiration": "3600",
        },
    ),
    ("default", "default", None),
]


def sample_review() -> dict[str, Any]:
    """dev/review.json: a v1 review of a generateName Pod using default/s3-reader."""
    loaded: dict[str, Any] = json.loads((REPO / "dev" / "review.json").read_text())
    return loaded


def make_pod(
    service_account: str = "s3-reader",
    *,
    name: str | None = "app",
    namespace: str = "default",
    containers: list[dict[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": namespace}
    if name is not None:
        metadata["name"] = name
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "containers": containers if containers is not None else [{"name": "app", "image": "x"}],
    }
    if volumes is not None:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def make_review(
    pod: dict[str, Any],
    *,
    uid: str = UID,
    api_version: str | None = "admission.k8s.io/v1",
    kind: str | None = "AdmissionReview",
    namespace: str | None = "default",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "object": pod,
    }
    if namespace is not None:
        request["namespace"] = namespace
    review: dict[str, Any] = {}
    if api_version is not None:
        review["apiVersion"] = api_version
    if kind is not None:
        review["kind"] = kind
    review["request"] = request
    return review


def decode_patch(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch of an AdmissionReview `response` (strict base64)."""
    raw = base64.b64decode(response["patch"], validate=True)
    patch: list[dict[str, Any]] = json.loads(raw)
    return patch


def patched_pod(review: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod the API server stores after applying the answer's patch."""
    pod = copy.deepcopy(review["request"]["object"])
    response = answer["response"]
    if "patch" not in response:
        return pod
    result: dict[str, Any] = jsonpatch.apply_patch(pod, decode_patch(response))
    return result


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {var["name"]: var.get("value", "") for var in container.get("env", [])}


# --- Prometheus exposition ----------------------------------------------------------------------


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the sample `name` whose labels are exactly `labels`; None when absent."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and dict(sample.labels) == wanted:
                return float(sample.value)
    return None


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


# --- processes and polling ----------------------------------------------------------------------


def lowest(low: int, high: int) -> int:
    """A deterministic jitter: always the low end of the range."""
    return low


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_sync(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.02, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.01,
    what: str = "",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)
