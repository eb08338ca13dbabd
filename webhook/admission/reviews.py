"""Pure. AdmissionReview in, AdmissionReview out: validation, the response envelope, warnings
and audit annotations. Shared by the server and the offline `mutate` command.

Wire format kept from upstream: `kind`, `apiVersion` and `request.uid` echoed, base64 JSON
patch with `patchType: JSONPatch`, no patch when there is nothing to do. Added: `warnings` that
kubectl shows for non-obvious outcomes, and `auditAnnotations` recording the decision.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.admission.extensions import Extras
from webhook.admission.mutation import Decision, PatchOp
from webhook.errors import BadReview, InvalidPod

__all__ = ["AdmissionRequest", "dumps", "encode_patch", "parse_review", "respond", "warnings_for"]

API_VERSIONS = frozenset({"admission.k8s.io/v1", "admission.k8s.io/v1beta1"})

# Notes that deserve a kubectl warning; the rest (jitter, skipped entries) only reach the logs.
_WARNED = frozenset(
    {
        "service-account-not-found",
        "service-account-late",
        "namespace-missing",
        "expiration-clamped",
        "container-skipped",
        "variables-present",
        "invalid-annotation",
        "invalid-role-arn",
    }
)
_WARNING_LIMIT = 120  # kubectl shows them whole up to about this length


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of an AdmissionReview the webhook reads."""

    uid: str
    namespace: str
    pod: dict[str, Any]
    kind: str | None
    api_version: str | None

    @property
    def pod_name(self) -> str:
        metadata = self.pod.get("metadata") or {}
        return str(metadata.get("name") or metadata.get("generateName") or "")


def _optional_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise BadReview(f"{where} must be a string")


def parse_review(review: Any) -> AdmissionRequest:
    """Validate a decoded AdmissionReview for a Pod; BadReview says what is wrong."""
    if not isinstance(review, dict):
        raise BadReview("the body must be a JSON object (an AdmissionReview)")
    kind = _optional_str(review.get("kind"), "kind")
    api_version = _optional_str(review.get("apiVersion"), "apiVersion")
    if kind not in (None, "AdmissionReview"):
        raise BadReview(f"kind must be AdmissionReview, not {kind!r}")
    if api_version is not None and api_version not in API_VERSIONS:
        raise BadReview(
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, "
            f"not {api_version!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no `request` object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid must be a non-empty string")
    requested = request.get("kind")
    if isinstance(requested, dict) and (
        requested.get("kind") != "Pod" or requested.get("group", "") != ""
    ):
        raise BadReview(f"this webhook admits Pods, not {requested.get('kind')!r}")
    pod = request.get("object")
    if not isinstance(pod, dict):
        raise InvalidPod("request.object must be a Pod object")
    if pod.get("kind", "Pod") != "Pod":
        raise InvalidPod(f"request.object is a {pod.get('kind')!r}, not a Pod")
    # The API server always sends the namespace a Pod is created in; like upstream, the
    # request's namespace is the one looked up, never the Pod's own metadata.namespace.
    namespace = request.get("namespace") or ""
    if not isinstance(namespace, str):
        raise BadReview("request.namespace must be a string")
    return AdmissionRequest(uid, namespace, pod, kind, api_version)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; orjson on the hot path, the json module for what it cannot take
    (integers beyond 64 bits that an extension rule might add)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_patch(ops: Sequence[PatchOp]) -> str:
    return base64.b64encode(dumps(list(ops))).decode("ascii")


def warnings_for(decision: Decision) -> list[str]:
    """Short sentences for kubectl; one per explained note, in order, without repeats."""
    seen: list[str] = []
    for note in decision.notes:
        if note.code not in _WARNED:
            continue
        text = f"pod-identity-webhook: {note.message}"
        if len(text) > _WARNING_LIMIT:
            text = text[: _WARNING_LIMIT - 3] + "..."
        if text not in seen:
            seen.append(text)
    return seen


def audit_annotations(decision: Decision) -> dict[str, str]:
    annotations = {
        "decision": "mutated" if decision.mutated else "not-mutated",
        "reason": decision.reason,
        "service-account": decision.service_account,
    }
    if decision.method:
        annotations["method"] = decision.method
    if decision.role_source:
        annotations["role-source"] = decision.role_source
    if decision.role_arn:
        annotations["role-arn"] = decision.role_arn
    return annotations


def respond(
    request: AdmissionRequest, decision: Decision, extras: Extras | None = None
) -> dict[str, Any]:
    """The AdmissionReview response for one decision and what the extensions added."""
    extras = extras or Extras()
    response: dict[str, Any] = {"uid": request.uid}
    audit = audit_annotations(decision)
    if extras.denial:
        # A deliberate denial by the policy or a rule: the API server rejects the Pod with it.
        response["allowed"] = False
        response["status"] = {"code": 403, "reason": "Forbidden", "message": extras.denial}
        audit["decision"] = "denied"
    else:
        response["allowed"] = True
        ops = [*decision.patch, *extras.patch]
        if ops:
            response["patch"] = encode_patch(ops)
            response["patchType"] = "JSONPatch"
    warnings = [*warnings_for(decision), *extras.warnings]
    if warnings:
        response["warnings"] = warnings
    response["auditAnnotations"] = {**audit, **extras.audit}
    review: dict[str, Any] = {}
    if request.kind:
        review["kind"] = request.kind
    if request.api_version:
        review["apiVersion"] = request.api_version
    review["response"] = response
    return review
