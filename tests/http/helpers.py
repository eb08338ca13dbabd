"""Shared builders and small tools for the HTTP tier (imported by the test modules)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.reviews import PREFIX, ROLE

if TYPE_CHECKING:
    import ssl

    from aiohttp import web

    from webhook.config import Limits
    from webhook.server.connections import GuardedSite

REPO = Path(__file__).resolve().parents[2]
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


async def echo_site(
    server_context: ssl.SSLContext, limits: Limits
) -> tuple[web.AppRunner, GuardedSite]:
    """A webhook `GuardedSite` (not started yet) in front of an app whose `POST /` answers the
    length of the body it read, and the runner to clean up."""
    from aiohttp import web

    from webhook.server.connections import GuardedSite

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application()
    app.router.add_post("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner, GuardedSite(runner, 0, server_context, limits, handler_args={})
