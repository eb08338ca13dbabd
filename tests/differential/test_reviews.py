"""The same AdmissionReviews to upstream's Go webhook and ours; every difference classified.

At least 1,000 seeded random Pods (`DIFFERENTIAL_SEED`, `DIFFERENTIAL_PODS` override the
defaults) are posted as admission.k8s.io/v1 reviews to both webhooks over HTTPS with
keep-alive and a few concurrent connections. Both patches are decoded and applied to the Pod,
and the two Pods are compared (compare.py). The run fails on any difference that no rule of
docs/compatibility.md section 2 explains, printing pod index, seed, path, ours and upstream.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
import pytest

from tests.differential.compare import (
    CM_AUDIENCE,
    CM_EXPIRATION,
    CM_STS,
    DENIED,
    DROPPED_UNKNOWN,
    GO_DEFAULT,
    JITTER,
    QUANTITY,
    RESENT,
    Tally,
    compare_http_error,
    compare_reviews,
)
from tests.differential.conftest import Pair, record_report
from tests.differential.generator import COUNT, SEED, Case, generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CONNECTIONS = 4


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, context: ssl.SSLContext
) -> dict[str, Any]:
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json"}, ssl=context
    ) as response:
        text = await response.read()
        if response.status != 200:
            return {"http_status": response.status, "body": text.decode(errors="replace")[:300]}
        answer: dict[str, Any] = json.loads(text)
        return answer


async def exchange(
    pair: Pair, cases: list[Case]
) -> list[tuple[Case, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """Each case's review, posted to both webhooks; CONNECTIONS keep-alive connections each."""
    targets = [
        (f"{pair.ours.url}/mutate", pair.ours.context),
        (f"{pair.upstream.url}/mutate", pair.upstream.context),
    ]
    results: list[Any] = [None] * len(cases)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(cases)):
        queue.put_nowait(i)
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS), timeout=timeout
        ) as ours_session,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS), timeout=timeout
        ) as up_session,
    ):
        sessions = (ours_session, up_session)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                # Every tenth review is admission.k8s.io/v1beta1 (same shape, echoed back).
                version = "admission.k8s.io/v1beta1" if i % 10 == 9 else "admission.k8s.io/v1"
                review = cases[i].review(version)
                body = json.dumps(review).encode()
                ours, upstream = await asyncio.gather(
                    *(
                        _post(session, url, body, context)
                        for session, (url, context) in zip(sessions, targets, strict=True)
                    )
                )
                results[i] = (cases[i], review, ours, upstream)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return results


async def test_same_reviews_same_pods(pair: Pair, request: pytest.FixtureRequest) -> None:
    cases = generate(SEED, COUNT)
    results = await exchange(pair, cases)
    tally = Tally()
    for case, review, ours, upstream in results:
        for side, answer, other in (("ours", ours, upstream), ("upstream", upstream, ours)):
            if "http_status" in answer:
                compare_http_error(case, side, answer["http_status"], answer["body"], other, tally)
                break
        else:
            compare_reviews(case, review, ours, upstream, tally)
    text = f"reviews (seed {SEED}, {COUNT} Pods):\n{tally.report()}"
    record_report(request.config, text)
    (pair.cluster.workdir / "reviews-report.txt").write_text(text + "\n", encoding="utf-8")
    assert not tally.unclassified, text
    assert tally.compared >= 1000
    # The generator must keep exercising every deviation the contract allows, or the tier
    # would silently stop proving that they are the only ones.
    for name in (
        DROPPED_UNKNOWN,
        GO_DEFAULT,
        QUANTITY,
        RESENT,
        DENIED,
        JITTER,
        CM_AUDIENCE,
        CM_STS,
        CM_EXPIRATION,
    ):
        assert tally.classes[name] > 0, f"no Pod exercised {name!r}\n{text}"
