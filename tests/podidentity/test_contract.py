"""The wire contracts, with clients nobody here wrote: botocore's `eks-auth` client against the
broker's HTTP edge (every error type of the model), and botocore's container credential
provider against the agent. The Kubernetes and STS edges are fakes here; tests/e2e runs the
same clients against the real API server and moto's STS."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import trustme
from aiohttp import web
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import ContainerProvider
from botocore.exceptions import ClientError, CredentialRetrievalError
from prometheus_client import CollectorRegistry

from tests.podidentity.fakes import FakeKube, FakeSts, jwt
from tests.support.reviews import role_arn
from webhook.agent.server import Agent, AgentState, make_agent_app
from webhook.broker.server import BrokerMetrics, BrokerState, make_broker_app
from webhook.broker.service import Broker, Settings
from webhook.broker.sts import TokenBucket
from webhook.errors import (
    EksAuthError,
    InternalServerException,
    ServiceUnavailableException,
)
from webhook.podidentity.associations import AssociationIndex
from webhook.podidentity.tokens import unverified_claims
from webhook.podidentity.wire import AssumedRole, Credentials

ROLE = role_arn("app")


@dataclass
class Served:
    url: str
    ca: Path
    kube: FakeKube
    sts: FakeSts
    state: BrokerState


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Served]:
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    kube, sts = FakeKube(), FakeSts(clock=time.time)
    index = AssociationIndex()
    index.replace(
        [
            {
                "metadata": {"name": "app", "namespace": "team-a", "uid": "u-1"},
                "spec": {"serviceAccountName": "app", "roleArn": ROLE},
            }
        ]
    )
    settings = Settings(
        cluster_name="prod",
        cluster_arn="arn:aws:eks:us-east-1:111122223333:cluster/prod",
        audience="pods.eks.amazonaws.com",
        agent_audience="pod-identity-broker",
        agent_service_accounts=frozenset({("kube-system", "agent")}),
        require_agent_token=False,
        session_duration=3600,
        refresh_margin=1500,
    )
    service = Broker(settings, index, kube, sts, TokenBucket(0.001, 1, 0.0))
    state = BrokerState(None, service, BrokerMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    runner = web.AppRunner(make_broker_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Served(f"https://127.0.0.1:{port}", ca, kube, sts, state)
    await runner.cleanup()


def client(served: Served, *, mangle: Callable[[Any], None] | None = None) -> Any:
    made = botocore.session.get_session().create_client(
        "eks-auth",
        region_name="us-east-1",
        endpoint_url=served.url,
        verify=str(served.ca),
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )

    def before_send(request: Any, **_: Any) -> None:
        # One connection per call: an idle TLS keep-alive left at teardown would be collected
        # unclosed by the closed test loop (filterwarnings=error).
        request.headers["Connection"] = "close"
        if mangle is not None:
            mangle(request)

    made.meta.events.register("before-send.eks-auth.*", before_send)
    return made


async def call(served: Served, token: str, cluster: str = "prod", **kwargs: Any) -> Any:
    made = client(served, **kwargs)
    try:
        return await asyncio.to_thread(
            made.assume_role_for_pod_identity, clusterName=cluster, token=token
        )
    finally:
        made.close()


async def test_botocore_reads_the_answer(broker: Served) -> None:
    token = broker.kube.add_pod("team-a", "web", "uid-1")
    answer = await call(broker, token)
    assert answer["subject"] == {"namespace": "team-a", "serviceAccount": "app"}
    assert answer["podIdentityAssociation"] == {
        "associationArn": "arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/a-u1",
        "associationId": "a-u1",
    }
    assert answer["assumedRoleUser"]["arn"] == (
        "arn:aws:sts::111122223333:assumed-role/app/eks-prod-web-uid-1"
    )
    assert answer["credentials"]["accessKeyId"] == "ASIA00000001"
    assert 3590 < answer["credentials"]["expiration"].timestamp() - time.time() <= 3600


def _unreachable(served: Served) -> None:
    served.kube.error = ServiceUnavailableException("TokenReview failed: no answer")


def _sts_broken(served: Served) -> None:
    served.sts.error = InternalServerException("STS answered InternalFailure")


def _not_json(request: Any) -> None:
    request.body = b"{not json"
    request.headers["Content-Length"] = str(len(request.body))


def _expired(served: Served) -> str:
    token = jwt({"expired": 1})
    served.kube.reviews[token] = {
        "authenticated": False,
        "error": "[invalid bearer token, service account token has expired]",
    }
    return token


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDeniedException", 400),
        ("ExpiredTokenException", 400),
        ("InternalServerException", 500),
        ("InvalidParameterException", 400),
        ("InvalidRequestException", 400),
        ("InvalidTokenException", 400),
        ("ResourceNotFoundException", 404),
        ("ServiceUnavailableException", 503),
        ("ThrottlingException", 429),
    ],
)
async def test_every_error_type_reaches_botocore_as_its_modeled_exception(
    broker: Served, code: str, status: int
) -> None:
    token = broker.kube.add_pod("team-a", "web", "uid-1")
    cluster, mangle = "prod", None
    if code == "AccessDeniedException":
        broker.state.broker.settings = __import__("dataclasses").replace(
            broker.state.broker.settings, require_agent_token=True
        )
    elif code == "ExpiredTokenException":
        token = _expired(broker)
    elif code == "InternalServerException":
        _sts_broken(broker)
    elif code == "InvalidParameterException":
        cluster = "-not-a-cluster"
    elif code == "InvalidRequestException":
        mangle = _not_json
    elif code == "InvalidTokenException":
        token = jwt({"forged": True})
    elif code == "ResourceNotFoundException":
        token = broker.kube.add_pod("team-b", "web", "uid-2")
    elif code == "ServiceUnavailableException":
        _unreachable(broker)
    elif code == "ThrottlingException":
        await call(broker, broker.kube.add_pod("team-a", "first", "uid-0"))  # uses the burst
    made = client(broker, mangle=mangle)
    modeled = getattr(made.exceptions, code)
    with pytest.raises(modeled) as caught:
        await asyncio.to_thread(made.assume_role_for_pod_identity, clusterName=cluster, token=token)
    made.close()
    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Message"]
    assert token not in str(error)  # never echoed


async def test_broker_metrics_count_outcomes(broker: Served) -> None:
    token = broker.kube.add_pod("team-a", "web", "uid-1")
    await call(broker, token)
    await call(broker, token)
    with pytest.raises(ClientError):
        await call(broker, jwt({"forged": 1}))
    metrics = broker.state.metrics
    assert metrics.requests.labels("success")._value.get() == 2
    assert metrics.requests.labels("InvalidTokenException")._value.get() == 1
    assert metrics.credentials.labels("sts")._value.get() == 1
    assert metrics.credentials.labels("cache")._value.get() == 1


async def test_an_oversized_body_is_the_callers_error(broker: Served) -> None:
    token = broker.kube.add_pod("team-a", "web", "uid-1")

    def pad(request: Any) -> None:
        request.body = b'{"token": "' + b"x" * 70_000 + b'"}'
        request.headers["Content-Length"] = str(len(request.body))

    with pytest.raises(ClientError) as raised:
        await call(broker, token, mangle=pad)
    error = raised.value.response
    assert error["Error"]["Code"] == "InvalidRequestException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    metrics = broker.state.metrics
    assert metrics.requests.labels("InvalidRequestException")._value.get() == 1
    assert metrics.requests.labels("InternalServerException")._value.get() == 0


# --- the agent, through botocore's container provider -------------------------------------


class FakeBroker:
    def __init__(self) -> None:
        self.calls = 0
        self.error: EksAuthError | None = None
        self.expiration = 4_000_000_000.0

    async def assume(self, token: str) -> AssumedRole:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if "forged" in unverified_claims(token):
            from webhook.errors import InvalidTokenException

            raise InvalidTokenException("the token is not valid")
        return AssumedRole(
            "team-a",
            "app",
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/a-u1",
            "a-u1",
            "arn:aws:sts::111122223333:assumed-role/app/eks-prod-web-uid-1",
            "AROA:eks-prod-web-uid-1",
            Credentials(f"ASIA{self.calls}", "secret", "session", self.expiration),
        )


@dataclass
class AgentServed:
    url: str
    fake: FakeBroker
    agent: Agent
    clock: list[float]


@pytest.fixture
async def agent() -> AsyncIterator[AgentServed]:
    fake, clock = FakeBroker(), [3_000_000_000.0]
    core = Agent(fake, refresh_margin=1200, clock=lambda: clock[0])
    runner = web.AppRunner(make_agent_app(AgentState(core, frozenset({"127.0.0.1"}))))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield AgentServed(f"http://127.0.0.1:{port}/v1/credentials", fake, core, clock)
    await runner.cleanup()


def provider_credentials(url: str, token_file: Path) -> Any:
    environ = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": url,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }
    return ContainerProvider(environ=environ).load()


async def test_botocore_container_provider_reads_the_agent(
    agent: AgentServed, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(jwt({"exp": 3_100_000_000, "kubernetes.io": {"pod": {"uid": "p1"}}}))
    credentials = await asyncio.to_thread(provider_credentials, agent.url, token_file)
    frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("ASIA1", "secret", "session")
    assert credentials.method == "container-role"
    # The second request is served from the cache: the token was seen validated for that Pod.
    await asyncio.to_thread(provider_credentials, agent.url, token_file)
    assert agent.fake.calls == 1
    # A new token of the same Pod goes to the broker first.
    token_file.write_text(jwt({"exp": 3_100_000_001, "kubernetes.io": {"pod": {"uid": "p1"}}}))
    await asyncio.to_thread(provider_credentials, agent.url, token_file)
    assert agent.fake.calls == 2


async def test_the_agent_refuses_what_it_must(agent: AgentServed, tmp_path: Path) -> None:
    import aiohttp

    token = jwt({"exp": 3_100_000_000, "kubernetes.io": {"pod": {"uid": "p1"}}})
    async with aiohttp.ClientSession() as session:

        async def get(headers: dict[str, str]) -> tuple[int, Any]:
            async with session.get(agent.url, headers=headers) as answer:
                return answer.status, await answer.json()

        for host in ("evil.example", "evil.example:80", "10.0.0.1", "[::1]", "127.0.0.1.nip.io"):
            status, body = await get({"Host": host, "Authorization": token})
            assert (status, body.get("code")) == (403, "host_refused"), (host, body)
        status, body = await get({"Host": "127.0.0.1:80"})
        assert (status, body["code"]) == (400, "InvalidRequestException")
        status, body = await get({"Host": "127.0.0.1", "Authorization": "not a token"})
        assert (status, body["code"]) == (400, "InvalidParameterException")
        status, body = await get({"Host": "127.0.0.1", "Authorization": jwt({"forged": 1})})
        assert (status, body["code"]) == (401, "InvalidTokenException")
        async with session.post(agent.url, headers={"Host": "127.0.0.1"}) as answer:
            assert answer.status == 405
    token_file = tmp_path / "token"
    token_file.write_text(jwt({"forged": 1}))
    with pytest.raises(CredentialRetrievalError):
        await asyncio.to_thread(provider_credentials, agent.url, token_file)


async def test_the_agent_serves_cached_credentials_while_the_broker_is_down(
    agent: AgentServed, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(jwt({"exp": 3_100_000_000, "kubernetes.io": {"pod": {"uid": "p1"}}}))
    agent.fake.expiration = agent.clock[0] + 3600
    await asyncio.to_thread(provider_credentials, agent.url, token_file)
    agent.fake.error = ServiceUnavailableException("the broker cannot be reached")
    agent.clock[0] += 3600 - 1000  # inside the refresh margin: the agent asks the broker
    frozen = (
        await asyncio.to_thread(provider_credentials, agent.url, token_file)
    ).get_frozen_credentials()
    assert frozen.access_key == "ASIA1"
    assert agent.agent.metrics.credentials.labels("stale")._value.get() == 1
    agent.clock[0] += 1000 - 30  # a minute from expiry: no more stale answers
    with pytest.raises(CredentialRetrievalError):
        await asyncio.to_thread(provider_credentials, agent.url, token_file)
    # A token never validated gets nothing from the cache, even for a cached Pod.
    agent.fake.error = None
    agent.clock[0] -= 2000
    new_token = tmp_path / "new"
    new_token.write_text(
        jwt({"exp": 3_100_000_000, "kubernetes.io": {"pod": {"uid": "p1"}}, "n": 2})
    )
    agent.fake.error = ServiceUnavailableException("down")
    with pytest.raises(CredentialRetrievalError):
        await asyncio.to_thread(provider_credentials, agent.url, new_token)


async def test_an_expired_token_is_never_served_from_the_cache(
    agent: AgentServed, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(jwt({"exp": 3_000_000_100, "kubernetes.io": {"pod": {"uid": "p1"}}}))
    await asyncio.to_thread(provider_credentials, agent.url, token_file)
    agent.clock[0] += 200
    agent.fake.error = ServiceUnavailableException("down")
    with pytest.raises(CredentialRetrievalError):
        await asyncio.to_thread(provider_credentials, agent.url, token_file)
