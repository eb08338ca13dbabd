"""Pure. The AdmissionReview envelope: what a request must hold, and the response to it.
Shared by the server and the offline `mutate` command.

Wire format kept from upstream: `kind`, `apiVersion` and `request.uid` echoed, base64 JSON
patch with `patchType: JSONPatch`, no patch when there is nothing to do. Added: `warnings` that
kubectl shows for non-obvious outcomes, and `auditAnnotations` recording the decision. What goes
into an answer is decided elsewhere (`verdicts`); this module only knows the envelope.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from webhook.admission.wire import AdmissionResponse, AdmissionReview, PatchOp, Pod
from webhook.errors import BadReview, InvalidPod

__all__ = ["AdmissionRequest", "Answer", "dumps", "encode_patch", "parse_review", "respond"]

API_VERSIONS = frozenset({"admission.k8s.io/v1", "admission.k8s.io/v1beta1"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionRequest:
    """The parts of an AdmissionReview the webhook reads."""

    uid: str
    namespace: str
    pod: Pod
    kind: str | None
    api_version: str | None

    @property
    def pod_name(self) -> str:
        metadata = self.pod.get("metadata")
        if not isinstance(metadata, dict):
            return ""
        return str(metadata.get("name") or metadata.get("generateName") or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one response says, whatever decided it."""

    ops: Sequence[PatchOp] = ()
    warnings: Sequence[str] = ()
    audit: Mapping[str, str] = field(default_factory=dict)
    denial: str | None = None
    """Set when the Pod is refused on purpose (policy or rule): HTTP 200, allowed false, 403."""
    patch: str = field(init=False)
    """`ops` as the wire carries them (base64 JSON), encoded once: a memo's answer is sent to
    every replica of a Deployment."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", encode_patch(self.ops) if self.ops else "")


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
    return AdmissionRequest(
        uid=uid, namespace=namespace, pod=cast("Pod", pod), kind=kind, api_version=api_version
    )


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; orjson on the hot path, the json module for what it cannot take
    (integers beyond 64 bits that an extension rule might add)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_patch(ops: Sequence[PatchOp]) -> str:
    return base64.b64encode(dumps(ops)).decode("ascii")  # a tuple is a JSON array too


def respond(request: AdmissionRequest, answer: Answer) -> AdmissionReview:
    """The AdmissionReview response for one answer."""
    response: AdmissionResponse = {"uid": request.uid}
    if answer.denial:
        # A deliberate denial by the policy or a rule: the API server rejects the Pod with it.
        response["allowed"] = False
        response["status"] = {"code": 403, "reason": "Forbidden", "message": answer.denial}
    else:
        response["allowed"] = True
        if answer.patch:
            response["patch"] = answer.patch
            response["patchType"] = "JSONPatch"
    if answer.warnings:
        response["warnings"] = list(answer.warnings)
    response["auditAnnotations"] = dict(answer.audit)
    review: AdmissionReview = {}
    if request.kind:
        review["kind"] = request.kind
    if request.api_version:
        review["apiVersion"] = request.api_version
    review["response"] = response
    return review
