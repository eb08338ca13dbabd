"""The broker's request logic with fake Kubernetes and STS edges: caller and node checks, the
association, the role policy, caching, collapsing and the STS rate bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.podidentity.fakes import FakeKube, FakeSts, jwt
from tests.support.reviews import role_arn
from webhook.admission.policy import parse_policy
from webhook.broker.service import Broker, Outcome, Settings
from webhook.broker.sts import TokenBucket
from webhook.errors import (
    AccessDeniedException,
    InvalidTokenException,
    ResourceNotFoundException,
    ServiceUnavailableException,
    ThrottlingException,
)
from webhook.podidentity.associations import AssociationIndex
from webhook.podidentity.wire import AssumeRequest

ROLE = role_arn("app")
CLUSTER = "prod"


def association(namespace: str = "team-a", name: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {"serviceAccountName": name, "roleArn": ROLE, **spec},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(
    *,
    require_agent: bool = False,
    policy: str | None = None,
    rate: float = 1000.0,
    burst: int = 1000,
    wait: float = 1.0,
) -> tuple[Broker, FakeKube, FakeSts, Clock]:
    kube, clock = FakeKube(), Clock()
    sts = FakeSts(clock=clock)
    index = AssociationIndex()
    index.replace([association()])
    parsed = parse_policy(policy) if policy else None
    broker = Broker(
        Settings(
            cluster_name=CLUSTER,
            cluster_arn=f"arn:aws:eks:us-east-1:111122223333:cluster/{CLUSTER}",
            audience="pods.eks.amazonaws.com",
            agent_audience="pod-identity-broker",
            agent_service_accounts=frozenset({("kube-system", "agent")}),
            require_agent_token=require_agent,
            session_duration=3600,
            refresh_margin=1500,
        ),
        index,
        kube,
        sts,
        TokenBucket(rate, burst, wait),
        policy=lambda: parsed,
        clock=clock,
    )
    return broker, kube, sts, clock


async def ask(broker: Broker, token: str, authorization: str = "", node: str = "") -> Any:
    return await broker.assume(AssumeRequest(CLUSTER, token, node), authorization, Outcome())


async def test_first_request_assumes_then_the_cache_answers_until_near_expiry() -> None:
    broker, kube, sts, clock = make()
    token = kube.add_pod("team-a", "web", "uid-1")
    first = await ask(broker, token)
    assert first.assumed_role_arn.endswith("/eks-prod-web-uid-1")
    (calls,) = sts.calls
    assert calls[0].role_arn == ROLE
    assert dict(calls[0].tags)["kubernetes-pod-uid"] == "uid-1"
    assert calls[0].transitive_tag_keys == tuple(dict(calls[0].tags))
    assert (await ask(broker, token)).credentials == first.credentials
    clock.now += 3600 - 1500 - 1  # just outside the margin: still cached
    assert (await ask(broker, token)).credentials == first.credentials
    assert len(sts.calls) == 1
    clock.now += 2
    assert (await ask(broker, token)).credentials != first.credentials
    assert len(sts.calls) == 2
    clock.now += 7200
    assert broker.forget_expired() == 1


async def test_identical_concurrent_requests_share_one_sts_call() -> None:
    broker, kube, sts, _ = make()
    sts.delay = 0.05
    token = kube.add_pod("team-a", "web", "uid-1")
    outcomes = [Outcome() for _ in range(50)]
    answers = await asyncio.gather(
        *(broker.assume(AssumeRequest(CLUSTER, token), "", o) for o in outcomes)
    )
    assert len(sts.calls) == 1
    assert {a.credentials for a in answers} == {answers[0].credentials}
    assert sorted(o.source for o in outcomes).count("shared") == 49


async def test_a_failed_sts_call_fails_every_waiter_and_is_retried_next_time() -> None:
    broker, kube, sts, _ = make()
    sts.delay, sts.error = 0.02, AccessDeniedException("trust policy")
    token = kube.add_pod("team-a", "web", "uid-1")
    results = await asyncio.gather(*(ask(broker, token) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AccessDeniedException) for r in results)
    sts.error = None
    await ask(broker, token)
    assert len(sts.calls) == 2


async def test_the_rate_bound_throttles_instead_of_queueing_forever() -> None:
    broker, kube, sts, _ = make(rate=1.0, burst=2, wait=0.2)
    tokens = [kube.add_pod("team-a", f"web-{i}", f"uid-{i}") for i in range(4)]
    results = await asyncio.gather(*(ask(broker, t) for t in tokens), return_exceptions=True)
    assert sum(isinstance(r, ThrottlingException) for r in results) == 2
    assert len(sts.calls) == 2


async def test_no_association_other_namespace_and_wrong_cluster() -> None:
    broker, kube, _, _ = make()
    other = kube.add_pod("team-b", "web", "uid-2")
    with pytest.raises(ResourceNotFoundException, match="team-b/app"):
        await ask(broker, other)
    token = kube.add_pod("team-a", "web", "uid-1")
    with pytest.raises(ResourceNotFoundException, match="no cluster"):
        await broker.assume(AssumeRequest("other", token), "", Outcome())


async def test_deleted_or_replaced_pods_and_mismatched_accounts() -> None:
    broker, kube, _, _ = make()
    token = kube.add_pod("team-a", "web", "uid-1")
    kube.pods["team-a/web"]["metadata"]["uid"] = "uid-new"
    with pytest.raises(InvalidTokenException, match="replaced"):
        await ask(broker, token)
    del kube.pods["team-a/web"]
    with pytest.raises(InvalidTokenException, match="no longer exists"):
        await ask(broker, token)
    token = kube.add_pod("team-a", "db", "uid-3")
    kube.pods["team-a/db"]["spec"]["serviceAccountName"] = "other"
    with pytest.raises(InvalidTokenException, match="not the Pod's"):
        await ask(broker, token)
    with pytest.raises(InvalidTokenException):
        await ask(broker, jwt({"forged": True}))


async def test_the_node_the_caller_names_must_be_the_pods() -> None:
    broker, kube, _, _ = make()
    token = kube.add_pod("team-a", "web", "uid-1", node="node-a")
    await ask(broker, token, node="node-a")
    with pytest.raises(AccessDeniedException, match="node node-b"):
        await ask(broker, token, node="node-b")


async def test_agent_tokens_pin_the_caller_to_its_node() -> None:
    broker, kube, _, _ = make(require_agent=True)
    token = kube.add_pod("team-a", "web", "uid-1", node="node-a")
    agent_a = kube.add_pod(
        "kube-system",
        "agent-a",
        "a1",
        service_account="agent",
        node="node-a",
        audience="pod-identity-broker",
    )
    agent_b = kube.add_pod(
        "kube-system",
        "agent-b",
        "b1",
        service_account="agent",
        node="node-b",
        audience="pod-identity-broker",
    )
    impostor = kube.add_pod("team-a", "x", "x1", node="node-a", audience="pod-identity-broker")
    await ask(broker, token, f"Bearer {agent_a}")
    with pytest.raises(AccessDeniedException, match="caller's node"):
        await ask(broker, token, f"Bearer {agent_b}")
    with pytest.raises(AccessDeniedException, match="not a node agent"):
        await ask(broker, token, f"Bearer {impostor}")
    with pytest.raises(AccessDeniedException, match="Bearer"):
        await ask(broker, token, "AWS4-HMAC-SHA256 Credential=AKIA/...")
    with pytest.raises(AccessDeniedException, match="refused"):
        await ask(broker, token, f"Bearer {token}")  # a Pod token is not an agent's
    # The agent's review is remembered for a minute: one review per request after that.
    before = kube.review_calls
    await ask(broker, token, f"Bearer {agent_a}")
    assert kube.review_calls == before + 1


async def test_an_unreachable_api_server_is_service_unavailable() -> None:
    broker, kube, _, _ = make()
    token = kube.add_pod("team-a", "web", "uid-1")
    kube.error = ServiceUnavailableException("TokenReview failed")
    with pytest.raises(ServiceUnavailableException):
        await ask(broker, token)


async def test_not_ready_until_synced_and_the_cluster_arn_is_known() -> None:
    broker, kube, _, _ = make()
    token = kube.add_pod("team-a", "web", "uid-1")
    broker.index.synced = False
    with pytest.raises(ServiceUnavailableException, match="starting"):
        await ask(broker, token)


POLICY = """
rules:
  - name: team-a
    namespaces: ["team-a"]
    mode: enforce
    roleArns: ["arn:aws:iam::111122223333:role/team-a-*"]
  - name: audit-accounts
    namespaces: ["*"]
    mode: audit
    accounts: ["999999999999"]
"""


async def test_the_role_policy_applies_to_associations() -> None:
    broker, kube, sts, _ = make(policy=POLICY)
    token = kube.add_pod("team-a", "web", "uid-1")
    with pytest.raises(AccessDeniedException, match="policy rule 'team-a' \\(enforce\\)"):
        await ask(broker, token)
    assert sts.calls == []
    broker.index.put(association(roleArn="arn:aws:iam::111122223333:role/team-a-web"))
    outcome = Outcome()
    await broker.assume(AssumeRequest(CLUSTER, token), "", outcome)
    assert outcome.violations == [("audit-accounts", "audit")]
    # The chained target role is judged too.
    broker.index.put(
        association(
            roleArn="arn:aws:iam::111122223333:role/team-a-web",
            targetRoleArn="arn:aws:iam::111122223333:role/admin",
        )
    )
    with pytest.raises(AccessDeniedException, match="role/admin is not allowed"):
        await ask(broker, token)


async def test_chaining_calls() -> None:
    broker, kube, sts, _ = make()
    broker.index.put(
        association(
            targetRoleArn="arn:aws:iam::444455556666:role/target",
            sessionPolicy='{"Statement": []}',
        )
    )
    token = kube.add_pod("team-a", "web", "uid-1")
    answer = await ask(broker, token)
    first, second = sts.calls[0]
    assert first.tags
    assert (first.policy, first.external_id) == ("", "")
    assert second.role_arn.endswith("role/target")
    assert second.tags == ()
    assert second.external_id == "uid-team-a-app"
    assert second.policy == '{"Statement": []}'
    assert first.duration == second.duration == 3600
    assert answer.assumed_role_arn.startswith("arn:aws:sts::444455556666:assumed-role/target/")
