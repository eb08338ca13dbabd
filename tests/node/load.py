"""Pods created at a fixed rate (an open loop: a slow answer never slows the schedule), and the
count of those that came out of admission without credentials.

The Pods name a scheduler that does not exist, so they stay Pending: what is measured is
admission, not the node's capacity to run a thousand containers.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.kube import ApiError, Kube

UNSCHEDULED = "piw-never-scheduled"
WORKERS = 8


def load_pod(name: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"piw-load": "true"}},
        "spec": {
            "serviceAccountName": service_account,
            "schedulerName": UNSCHEDULED,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }


def has_credentials(pod: dict[str, Any]) -> bool:
    """What a user relies on: the role and token variables and the token volume."""
    spec = pod["spec"]
    names = {item.get("name") for item in spec["containers"][0].get("env") or []}
    volumes = {volume["name"] for volume in spec.get("volumes") or []}
    return {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= names and "aws-iam-token" in volumes


@dataclass
class LoadResult:
    created: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late: int = 0
    """Creates that started more than a second behind their schedule."""

    def without_credentials(self) -> list[str]:
        return [pod["metadata"]["name"] for pod in self.created if not has_credentials(pod)]


class PodLoad:
    """`rate` Pod creates a second for `seconds` in `namespace`, in a background thread."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        service_account: str,
        *,
        rate: float,
        seconds: float,
        prefix: str = "load",
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.service_account = service_account
        self.rate = rate
        self.seconds = seconds
        self.prefix = prefix
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"pod-load-{prefix}", daemon=True)
        self.started_at = 0.0

    def start(self) -> PodLoad:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def join(self) -> LoadResult:
        self._thread.join(self.seconds + 120)
        assert not self._thread.is_alive(), "the load did not finish"
        return self.result

    def _create(self, index: int, due: float) -> None:
        if time.monotonic() - due > 1.0:
            with self._lock:
                self.result.late += 1
        body = load_pod(f"{self.prefix}-{index:05d}", self.service_account)
        body["metadata"]["namespace"] = self.namespace
        try:
            created = self.kube.create(body)
        except ApiError as exc:
            with self._lock:
                self.result.errors.append(str(exc))
            return
        with self._lock:
            self.result.created.append(created)

    def _run(self) -> None:
        total = int(self.rate * self.seconds)
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(WORKERS, thread_name_prefix=self.prefix) as pool:
            for index in range(total):
                due = self.started_at + index / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._create, index, due))
        for future in futures:
            future.result()
