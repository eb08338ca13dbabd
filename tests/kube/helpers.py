"""Small tools of the Kubernetes tier: polling, sync points with the reflector, reviews."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from tests.kube.fakeapi import PREFIX, SERVICE_ACCOUNTS, FakeApi
from tests.support.reviews import ROLE, patch_or_none

ANNOTATED = {f"{PREFIX}/role-arn": ROLE}


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = ""
) -> None:
    """Poll `predicate` on the event loop until it holds; fail after `timeout` seconds.

    The reflectors run in threads and hand their results to the loop with call_soon_threadsafe,
    so a condition becomes true at some later loop iteration: poll, never sleep a fixed time.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def processed(
    fake: FakeApi, resource: str = SERVICE_ACCOUNTS, *, timeout: float = 5.0
) -> None:
    """Return once the reflector of `resource` has handled every event sent so far.

    Sends a BOOKMARK behind those events and ends the watch; the reflector resumes from the
    bookmark's resourceVersion only after handling everything before it, and its store updates
    were queued on the loop before that request was sent, so they have run when this returns.
    """
    version = fake.bookmark(resource)
    fake.end_watches(resource)
    await eventually(
        lambda: any(r.resource_version == version for r in fake.recorded("watch", resource)),
        timeout=timeout,
        what=f"a {resource} watch from resourceVersion {version}",
    )
    for _ in range(3):
        await asyncio.sleep(0)


def injected_role(answer: Mapping[str, Any]) -> str | None:
    """The AWS_ROLE_ARN the answer's patch injects into the first container, or None."""
    response = answer["response"]
    assert response["allowed"] is True
    for operation in patch_or_none(response) or []:
        value = operation.get("value")
        found = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
        for item in found:
            if isinstance(item, dict) and item.get("name") == "AWS_ROLE_ARN":
                role: str = item["value"]
                return role
    return None
