"""The broker's edges without a cluster: STS error mapping, the rate bound, the HTTP routes,
readiness and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from prometheus_client import CollectorRegistry

from tests.podidentity.fakes import FakeKube, FakeSts
from webhook.broker.config import BrokerConfig
from webhook.broker.server import BrokerMetrics, BrokerState, make_broker_app, make_metrics_app
from webhook.broker.service import Broker, Settings
from webhook.broker.sts import TokenBucket, assume_error
from webhook.errors import ThrottlingException
from webhook.podidentity.associations import AssociationIndex


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "AssumeRole")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (client_error("AccessDenied"), "AccessDeniedException"),
        (client_error("RegionDisabledException"), "AccessDeniedException"),
        (client_error("Throttling"), "ThrottlingException"),
        (client_error("MalformedPolicyDocument"), "InvalidRequestException"),
        (client_error("PackedPolicyTooLarge"), "InvalidRequestException"),
        (client_error("ExpiredToken"), "ServiceUnavailableException"),
        (client_error("InvalidClientTokenId"), "ServiceUnavailableException"),
        (client_error("SomethingNew"), "InternalServerException"),
        (NoCredentialsError(), "ServiceUnavailableException"),
        (EndpointConnectionError(endpoint_url="https://sts"), "ServiceUnavailableException"),
        (RuntimeError("bug"), "InternalServerException"),
    ],
)
def test_sts_errors_become_eks_auth_errors(error: Exception, code: str) -> None:
    mapped = assume_error(error)
    assert mapped.code == code
    assert mapped.message


async def test_the_rate_bound_refills() -> None:
    bucket = TokenBucket(rate=50.0, burst=2, wait=0.5)
    await bucket.take()
    await bucket.take()
    started = asyncio.get_running_loop().time()
    await bucket.take()  # waits about 20 ms for the next token
    assert asyncio.get_running_loop().time() - started >= 0.01
    strict = TokenBucket(rate=0.01, burst=1, wait=0.1)
    await strict.take()
    with pytest.raises(ThrottlingException):
        await strict.take()


def state(*, synced: bool = True, identity: bool = True) -> BrokerState:
    index = AssociationIndex()
    if synced:
        index.replace([])
    settings = Settings(
        cluster_name="prod",
        cluster_arn="arn:aws:eks:us-east-1:111122223333:cluster/prod",
        audience="pods.eks.amazonaws.com",
        agent_audience="pod-identity-broker",
        agent_service_accounts=frozenset(),
        require_agent_token=False,
        session_duration=3600,
        refresh_margin=1500,
    )
    broker = Broker(settings, index, FakeKube(), FakeSts(), TokenBucket(10, 10, 1))
    return BrokerState(
        BrokerConfig(cluster_name="prod"),
        broker,
        BrokerMetrics(CollectorRegistry()),
        identity_ok=identity,
    )


async def serve(app: Any) -> TestClient[Any, Any]:
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.mark.parametrize(
    ("synced", "identity", "status", "text"),
    [
        (True, True, 200, "ok"),
        (False, True, 503, "associations not synced"),
        (True, False, 503, "AWS credentials are not resolvable"),
    ],
)
async def test_readiness(synced: bool, identity: bool, status: int, text: str) -> None:
    client = await serve(make_broker_app(state(synced=synced, identity=identity)))
    try:
        answer = await client.get("/readyz")
        assert answer.status == status
        assert text in await answer.text()
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()


async def test_other_routes_answer_in_eks_auth_shape() -> None:
    served = state()
    client = await serve(make_broker_app(served))
    try:
        answer = await client.get("/clusters/prod/assume-role-for-pod-identity")
        assert answer.status == 405
        assert answer.headers["x-amzn-ErrorType"] == "InvalidRequestException"
        answer = await client.post("/nope")
        assert answer.status == 404
        assert answer.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
        answer = await client.post(
            "/clusters/prod/assume-role-for-pod-identity", data=b"x" * (70 * 1024)
        )
        assert answer.status >= 400
        assert "message" in await answer.json()
    finally:
        await client.close()


async def test_starting_broker_is_unavailable() -> None:
    served = state()
    served.broker.settings = dataclasses.replace(served.broker.settings, cluster_arn="")
    client = await serve(make_broker_app(served))
    try:
        answer = await client.post(
            "/clusters/prod/assume-role-for-pod-identity", json={"token": "a.b.c"}
        )
        assert answer.status == 503
        assert answer.headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
    finally:
        await client.close()


async def test_metrics_page() -> None:
    served = state()
    client = await serve(make_metrics_app(served))
    try:
        text = await (await client.get("/metrics")).text()
        assert "pod_identity_broker_associations 0.0" in text
        assert "pod_identity_broker_cached_credentials 0.0" in text
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("link", "broker", "status", "text"),
    [
        (True, True, 200, "ok"),
        (False, True, 503, "link or listeners not up"),
        (True, False, 503, "broker not reachable"),
    ],
)
async def test_agent_readiness(link: bool, broker: bool, status: int, text: str) -> None:
    from webhook.agent.server import Agent, AgentState, make_health_app
    from webhook.agent.server import make_metrics_app as agent_metrics_app

    agent_state = AgentState(
        Agent(object(), refresh_margin=60), frozenset({"169.254.170.23"}), link, broker
    )
    client = await serve(make_health_app(agent_state))
    metrics = await serve(agent_metrics_app(agent_state))
    try:
        answer = await client.get("/readyz")
        assert answer.status == status
        assert text in await answer.text()
        assert (
            "pod_identity_agent_cached_credentials 0.0"
            in await (await metrics.get("/metrics")).text()
        )
    finally:
        await client.close()
        await metrics.close()
