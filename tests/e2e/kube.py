"""A raw-JSON client over the official `kubernetes` client's connection and TLS handling.

The typed models of the official client would drop fields they do not know, which is exactly
what the tier must not do to Pods with newer fields; so requests and answers stay plain JSON,
and what a test asserts on is the object as the API server returned it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client

REQUEST_TIMEOUT = (5.0, 30.0)


class ApiError(Exception):
    """A non-2xx answer; `body` is the Status object when the server sent one."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:500]
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status
        self.body = body
        self.message = message


@dataclass
class Answer:
    status: int
    body: Any
    warnings: list[str] = field(default_factory=list)


def configuration(host: str, ca: Path, cert: Path, key: Path) -> Any:
    """Client settings for a client certificate (the NO_PROXY environment must cover host)."""
    settings = client.Configuration(host=host)
    settings.ssl_ca_cert = str(ca)
    settings.cert_file = str(cert)
    settings.key_file = str(key)
    return settings


class Kube:
    """GET/POST/PATCH/PUT/DELETE of JSON objects by path."""

    def __init__(self, settings: Any) -> None:
        self._client = client.ApiClient(settings)
        self.host: str = settings.host

    def close(self) -> None:
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Answer:
        """Any answer, error or not."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, payload, post = self._client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
        )
        try:
            response = self._client.call_api(
                method, url, headers, payload, post, _request_timeout=REQUEST_TIMEOUT
            )
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError, client.ApiException) as exc:
            raise ApiError(method, path, 0, f"no answer: {exc}") from None
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = data.decode("utf-8", "replace")
        warnings = list(response.headers.getlist("Warning"))
        return Answer(response.status, decoded, warnings)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Answer:
        """A 2xx answer, or ApiError."""
        answer = self.call(
            method, path, body, query=query, content_type=content_type, accept=accept
        )
        if not 200 <= answer.status < 300:
            raise ApiError(method, path, answer.status, answer.body)
        return answer

    def get(self, path: str, *, accept: str = "application/json") -> Any:
        return self.request("GET", path, accept=accept).body

    def create(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Any:
        query = {"dryRun": "All"} if dry_run else None
        return self.request("POST", collection_path(obj), dict(obj), query=query).body

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Any:
        return self.request(
            "PATCH", path, dict(patch), content_type="application/merge-patch+json"
        ).body

    def delete(self, path: str) -> None:
        answer = self.call("DELETE", path)
        if answer.status not in (200, 202, 404):
            raise ApiError("DELETE", path, answer.status, answer.body)

    def apply_all(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Create each object (an existing one is left as it is)."""
        for obj in objects:
            answer = self.call("POST", collection_path(obj), dict(obj))
            if answer.status != 409 and not 200 <= answer.status < 300:
                raise ApiError("POST", collection_path(obj), answer.status, answer.body)


def collection_path(obj: Mapping[str, Any]) -> str:
    """`/api/v1/namespaces/<ns>/pods`-style collection path of an object (regular plurals:
    NetworkPolicy -> networkpolicies)."""
    api_version = obj["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = (obj.get("metadata") or {}).get("namespace")
    kind = obj["kind"].lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou" else kind + "s"
    if namespace:
        return f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{prefix}/{plural}"


def object_path(obj: Mapping[str, Any]) -> str:
    return f"{collection_path(obj)}/{quote(obj['metadata']['name'])}"


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def write_kubeconfig(
    path: Path, *, server: str, ca: bytes, cert: bytes, key: bytes, user: str
) -> Path:
    """A kubeconfig with inline credentials, like the one a person would debug with."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path
