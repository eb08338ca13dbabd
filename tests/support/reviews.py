"""Roles, Pods and AdmissionReviews as the API server sends them, and the patch read back."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch

#: The documentation account of AWS's examples; no role in it is real.
ACCOUNT = "111122223333"
PREFIX = "eks.amazonaws.com"
UID = "918ef1dc-928f-4525-99ef-988389f263c3"


def role_arn(name: str, *, account: str = ACCOUNT, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


#: The role of dev/service-accounts.yaml's s3-reader, which most tiers annotate.
ROLE = role_arn("s3-reader")
OTHER_ROLE = role_arn("other")


def make_pod(
    service_account: str = "s3-reader",
    *,
    name: str | None = "app",
    namespace: str = "default",
    containers: list[dict[str, Any]] | None = None,
    annotations: Mapping[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A v1 Pod (without a name when `name` is None)."""
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
    """The AdmissionReview of a CREATE of `pod`; None leaves that member out."""
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
    """The JSON patch of an AdmissionReview `response` (strict base64; KeyError without one)."""
    raw = base64.b64decode(response["patch"], validate=True)
    patch: list[dict[str, Any]] = json.loads(raw)
    return patch


def patch_or_none(response: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The JSON patch of `response`, or None when it has none (nothing to do)."""
    return decode_patch(response) if "patch" in response else None


def patched_pod(review: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    """The Pod the API server stores after applying the answer's patch."""
    pod = copy.deepcopy(review["request"]["object"])
    patch = patch_or_none(answer["response"])
    if patch is None:
        return pod
    result: dict[str, Any] = jsonpatch.apply_patch(pod, patch)
    return result


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {var["name"]: var.get("value", "") for var in container.get("env", [])}
