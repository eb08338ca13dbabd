"""Load: 1,000 Pods' first requests at once through one agent and the broker, against the real
API server and moto's STS; then the broker restarted while the agent keeps serving.

The broker's STS rate bound (20 calls a second by default, to stay well inside an account's
STS quota) is raised here: the test measures that each Pod costs one STS call, not the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.cluster import Namespace
from tests.e2e.podidentity import PodIdentity, role, tags_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PODS = 1000


async def fetch_all(url: str, tokens: list[str], host: str = "127.0.0.1") -> Counter[int]:
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(token: str) -> None:
            async with session.get(url, headers={"Authorization": token, "Host": host}) as answer:
                await answer.read()
                statuses[answer.status] += 1

        await asyncio.gather(*(one(token) for token in tokens))
    return statuses


def test_a_thousand_pods_at_once_then_a_broker_restart(
    pod_identity: PodIdentity, make_namespace: Callable[..., Namespace], tmp_path: Path
) -> None:
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    pod_identity.associate(ns, "app", role("e2e-load"))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        pods = list(pool.map(lambda i: pod_identity.pod(ns, f"load-{i:04d}"), range(PODS)))
        tokens = list(pool.map(lambda pod: pod_identity.pod_token(ns, pod), pods))
    prepared = time.monotonic() - started
    broker = pod_identity.spawn_broker("broker-load", "--sts-qps=2000", "--sts-burst=2000")
    agent = pod_identity.spawn_agent(broker, pod_identity.agent_token_file("node-a"))
    sent_before = len(pod_identity.sts_requests())

    began = time.monotonic()
    first = asyncio.run(fetch_all(agent.url, tokens))
    first_seconds = time.monotonic() - began
    assert first == {200: PODS}, first

    received = [
        r
        for r in pod_identity.sts_requests()[sent_before:]
        if tags_of(r).get("kubernetes-namespace") == ns.name
    ]
    per_pod = Counter(tags_of(r)["kubernetes-pod-uid"] for r in received)
    assert len(per_pod) == PODS
    assert max(per_pod.values()) == 1  # at most once per Pod and role
    assert {r["RoleArn"] for r in received} == {role("e2e-load")}

    # Again: all from the agent's cache.
    again = asyncio.run(fetch_all(agent.url, tokens))
    assert again == {200: PODS}
    assert len(pod_identity.sts_requests()) == sent_before + len(received)

    # The broker restarts while requests keep coming: the agent serves its cached credentials.
    # A token it has never seen validated gets nothing while the broker is away.
    unseen = pod_identity.pod_token(ns, pods[0])
    during: list[Counter[int]] = []
    refused_unseen: list[int] = []

    async def through_restart() -> None:
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, broker.process.stop)
        while not stopping.done():
            during.append(await fetch_all(agent.url, tokens[:200]))
        async with (
            aiohttp.ClientSession() as session,
            session.get(agent.url, headers={"Authorization": unseen}) as answer,
        ):
            refused_unseen.append(answer.status)
        during.append(await fetch_all(agent.url, tokens[200:]))

    asyncio.run(through_restart())
    assert broker.process.returncode == 0  # SIGTERM: a graceful shutdown
    assert refused_unseen == [503]
    down = sum(sum(c.values()) for c in during)
    assert all(set(c) == {200} for c in during), during
    restarted = pod_identity.restart(broker)
    after = asyncio.run(fetch_all(agent.url, tokens))
    assert after == {200: PODS}
    metrics = agent.metrics()
    print(
        f"\nload: {PODS} Pods prepared in {prepared:.1f} s; first requests at once: "
        f"{dict(first)} in {first_seconds:.1f} s; STS AssumeRole received {len(received)} "
        f"(max {max(per_pod.values())} per Pod); second wave {dict(again)} with no STS call; "
        f"{down} requests answered 200 while the broker was stopped; after restart {dict(after)}"
    )
    print([line for line in metrics.splitlines() if line.startswith("pod_identity_agent_")])
    agent.process.stop()
    restarted.process.stop()
