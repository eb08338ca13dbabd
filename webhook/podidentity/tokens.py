"""Pure. What a TokenReview says about a Pod's token, and the unverified claims of a token.

The claims are read without checking the signature, only where that is safe: by the agent to
index its cache (a token is never served before the broker validated it) and by the broker
after the API server validated it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from webhook.errors import (
    ExpiredTokenException,
    InvalidTokenException,
)
from webhook.podidentity.session import PodIdentity

__all__ = ["NODE_NAME", "POD_NAME", "POD_UID", "reviewed_identity", "unverified_claims"]

_EXTRA = "authentication.kubernetes.io/"
POD_NAME, POD_UID = _EXTRA + "pod-name", _EXTRA + "pod-uid"
NODE_NAME, NODE_UID = _EXTRA + "node-name", _EXTRA + "node-uid"
SA_PREFIX = "system:serviceaccount:"


def _one(extra: Mapping[str, Any], key: str) -> str:
    values = extra.get(key)
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
        return values[0]
    return ""


def reviewed_identity(status: Any, audience: str) -> PodIdentity:
    """The Pod a token belongs to, from a TokenReview's status; EKS Auth errors otherwise."""
    if not isinstance(status, dict):
        raise InvalidTokenException("the token could not be reviewed")
    if not status.get("authenticated"):
        error = str(status.get("error") or "the token is not valid")
        if "expired" in error.lower():
            raise ExpiredTokenException("the service account token has expired")
        # The API server's reason (wrong audience, unknown key, deleted Pod) is safe to echo:
        # it never contains the token.
        raise InvalidTokenException(f"the token is not valid: {error[:300]}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        raise InvalidTokenException(f"the token is not valid for the audience {audience}")
    user = status.get("user")
    username = user.get("username") if isinstance(user, dict) else None
    if not isinstance(username, str) or not username.startswith(SA_PREFIX):
        raise InvalidTokenException("the token is not a ServiceAccount token")
    namespace, _, account = username.removeprefix(SA_PREFIX).partition(":")
    if not namespace or not account:
        raise InvalidTokenException("the token is not a ServiceAccount token")
    extra = user.get("extra") if isinstance(user, dict) else None
    extra = extra if isinstance(extra, dict) else {}
    pod_name, pod_uid = _one(extra, POD_NAME), _one(extra, POD_UID)
    if not pod_name or not pod_uid:
        raise InvalidTokenException(
            "the token is not bound to a Pod (a projected ServiceAccount token is)"
        )
    return PodIdentity(namespace, account, pod_name, pod_uid, _one(extra, NODE_NAME))


def unverified_claims(token: str) -> dict[str, Any]:
    """The JWT's claims without any signature check; {} when they cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def pod_uid_claim(claims: Mapping[str, Any]) -> str:
    kubernetes = claims.get("kubernetes.io")
    pod = kubernetes.get("pod") if isinstance(kubernetes, dict) else None
    uid = pod.get("uid") if isinstance(pod, dict) else None
    return uid if isinstance(uid, str) else ""
