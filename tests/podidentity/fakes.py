"""Fakes of the broker's two edges for fast tests: the Kubernetes calls and STS. The real ones
are exercised in tests/e2e (the real API server, moto's STS)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from webhook.broker.sts import AssumeCall, Assumed
from webhook.errors import EksAuthError
from webhook.podidentity.wire import Credentials


def jwt(claims: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl"


@dataclass
class FakeKube:
    """Tokens map to TokenReview statuses; Pods by namespace/name."""

    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    review_calls: int = 0
    error: EksAuthError | None = None

    def add_pod(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        service_account: str = "app",
        node: str = "node-a",
        audience: str = "pods.eks.amazonaws.com",
        exp: int = 4_000_000_000,
    ) -> str:
        token = jwt(
            {"exp": exp, "iat": exp - 3600, "kubernetes.io": {"pod": {"uid": uid}}, "n": name}
        )
        self.reviews[token] = {
            "authenticated": True,
            "audiences": [audience],
            "user": {
                "username": f"system:serviceaccount:{namespace}:{service_account}",
                "extra": {
                    "authentication.kubernetes.io/pod-name": [name],
                    "authentication.kubernetes.io/pod-uid": [uid],
                    "authentication.kubernetes.io/node-name": [node],
                },
            },
        }
        self.pods[f"{namespace}/{name}"] = {
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"serviceAccountName": service_account, "nodeName": node},
        }
        return token

    async def review(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        self.review_calls += 1
        if self.error is not None:
            raise self.error
        status = self.reviews.get(token)
        if status is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        if not status.get("authenticated"):
            return status
        if not set(audiences) & set(status["audiences"]):
            return {"authenticated": False, "error": "token audiences are invalid"}
        return status

    async def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.error is not None:
            raise self.error
        return self.pods.get(f"{namespace}/{name}")


@dataclass
class FakeSts:
    calls: list[list[AssumeCall]] = field(default_factory=list)
    lifetime: float = 3600.0
    delay: float = 0.0
    error: EksAuthError | None = None
    clock: Any = None

    async def assume(self, calls: list[AssumeCall]) -> Assumed:
        self.calls.append(list(calls))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        last = calls[-1]
        number = len(self.calls)
        now = self.clock() if self.clock else 1_000_000.0
        account = last.role_arn.split(":")[4]
        name = last.role_arn.rsplit("/", 1)[1]
        return Assumed(
            Credentials(
                f"ASIA{number:08d}", f"secret-{number}", f"session-{number}", now + self.lifetime
            ),
            f"arn:aws:sts::{account}:assumed-role/{name}/{last.session_name}",
            f"AROAEXAMPLE:{last.session_name}",
        )
