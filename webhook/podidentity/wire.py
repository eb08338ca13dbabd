"""Pure. EKS Auth's AssumeRoleForPodIdentity on the wire, and the SDKs' container-credentials
answer, as botocore's `eks-auth` model (2023-11-26) and the SDKs' container provider read them.

    POST /clusters/{clusterName}/assume-role-for-pod-identity
    {"token": "<the Pod's projected token>", "eksNodeName": "...", ...}
    → 200 {"subject": {...}, "audience": "...", "podIdentityAssociation": {...},
           "assumedRoleUser": {...}, "credentials": {..., "expiration": <epoch seconds>}}
    → 4xx/5xx with `x-amzn-ErrorType: <code>` and {"message": "..."} (rest-json errors)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webhook.aws import parse_arn
from webhook.errors import (
    InternalServerException,
    InvalidParameterException,
    InvalidRequestException,
)

__all__ = [
    "AUDIENCE",
    "AssumeRequest",
    "AssumedRole",
    "Credentials",
    "error_body",
    "parse_assume_request",
    "parse_assume_response",
    "sdk_credentials",
]

AUDIENCE = "pods.eks.amazonaws.com"
CLUSTER_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9\-_]{0,99}")
JWT = re.compile(r"[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+")
MAX_TOKEN = 16 * 1024  # a projected token is about 1 KiB; refuse absurd ones before any work


@dataclass(frozen=True, slots=True)
class AssumeRequest:
    cluster_name: str
    token: str
    node_name: str = ""
    """`eksNodeName`: the node the caller says the Pod runs on (checked when given)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """Temporary credentials; `expiration` in Unix seconds. Never logged."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float

    def __repr__(self) -> str:  # a stray log line or assertion message must not leak a key
        return f"Credentials(access_key_id={self.access_key_id!r}, expiration={self.expiration})"


@dataclass(frozen=True, slots=True)
class AssumedRole:
    """One AssumeRoleForPodIdentity answer."""

    namespace: str
    service_account: str
    association_arn: str
    association_id: str
    assumed_role_arn: str
    assumed_role_id: str
    credentials: Credentials
    audience: str = AUDIENCE

    @property
    def account_id(self) -> str:
        arn = parse_arn(self.assumed_role_arn)
        if arn is None or arn.service != "sts" or not arn.resource.startswith("assumed-role/"):
            return ""
        return arn.account

    def to_wire(self) -> dict[str, Any]:
        return {
            "subject": {"namespace": self.namespace, "serviceAccount": self.service_account},
            "audience": self.audience,
            "podIdentityAssociation": {
                "associationArn": self.association_arn,
                "associationId": self.association_id,
            },
            "assumedRoleUser": {"arn": self.assumed_role_arn, "assumeRoleId": self.assumed_role_id},
            "credentials": {
                "sessionToken": self.credentials.session_token,
                "secretAccessKey": self.credentials.secret_access_key,
                "accessKeyId": self.credentials.access_key_id,
                "expiration": int(self.credentials.expiration),
            },
        }


def check_cluster_name(name: str) -> str:
    if not CLUSTER_NAME.fullmatch(name):
        raise InvalidParameterException(
            f"clusterName {name[:120]!r} is not a cluster name (letters, digits, - and _, "
            "1-100 characters, starting with a letter or digit)"
        )
    return name


def check_token_shape(token: str) -> str:
    if len(token) > MAX_TOKEN:
        raise InvalidParameterException(f"token is longer than {MAX_TOKEN} characters")
    if not JWT.fullmatch(token):
        raise InvalidParameterException("token is not a JWT (three base64url parts)")
    return token


def parse_assume_request(cluster_name: str, body: bytes) -> AssumeRequest:
    """The request from the path's cluster name and the JSON body; EKS Auth errors if bad."""
    check_cluster_name(cluster_name)
    try:
        document = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestException(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequestException("the body must be a JSON object")
    token = document.get("token")
    if token is None or token == "":
        raise InvalidParameterException("token is required")
    if not isinstance(token, str):
        raise InvalidParameterException("token must be a string")
    node = document.get("eksNodeName", "")
    if not isinstance(node, str):
        raise InvalidParameterException("eksNodeName must be a string")
    return AssumeRequest(cluster_name, check_token_shape(token), node)


def error_body(message: str) -> dict[str, str]:
    return {"message": message}


def _field(obj: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            raise InternalServerException(f"the broker's answer has no {'.'.join(path)}")
        obj = obj[name]
    return obj


def _text(obj: Any, *path: str) -> str:
    value = _field(obj, *path)
    if not isinstance(value, str):
        raise InternalServerException(f"the broker's answer: {'.'.join(path)} is not a string")
    return value


def parse_assume_response(document: Any) -> AssumedRole:
    """An AssumeRoleForPodIdentity answer read back (the agent's side)."""
    expiration = _field(document, "credentials", "expiration")
    if isinstance(expiration, bool) or not isinstance(expiration, int | float):
        raise InternalServerException("the broker's answer: credentials.expiration is not a time")
    return AssumedRole(
        namespace=_text(document, "subject", "namespace"),
        service_account=_text(document, "subject", "serviceAccount"),
        association_arn=_text(document, "podIdentityAssociation", "associationArn"),
        association_id=_text(document, "podIdentityAssociation", "associationId"),
        assumed_role_arn=_text(document, "assumedRoleUser", "arn"),
        assumed_role_id=_text(document, "assumedRoleUser", "assumeRoleId"),
        credentials=Credentials(
            access_key_id=_text(document, "credentials", "accessKeyId"),
            secret_access_key=_text(document, "credentials", "secretAccessKey"),
            session_token=_text(document, "credentials", "sessionToken"),
            expiration=float(expiration),
        ),
        audience=_text(document, "audience"),
    )


def iso8601(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sdk_credentials(role: AssumedRole) -> dict[str, str]:
    """The container-credentials answer the SDKs parse (AWS_CONTAINER_CREDENTIALS_FULL_URI)."""
    credentials = role.credentials
    return {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.session_token,
        "AccountId": role.account_id,
        "Expiration": iso8601(credentials.expiration),
    }
