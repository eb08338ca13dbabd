"""Tokens from the real API server, refused by the broker with the right EKS Auth error:
expired, wrong audience, other namespace, deleted Pod, forged, bound to a Node, not bound at all,
another node's agent, and an AWS-signed caller while agent tokens are required."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.cluster import Cluster, Namespace
from tests.e2e.podidentity import AGENT_AUDIENCE, CLUSTER_NAME, PodIdentity, role
from tests.e2e.processes import wait_until
from tests.e2e.test_pod_identity_broker import eks_auth, error_of

pytestmark = pytest.mark.e2e


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, claims, _ = token.split(".")
    pad = lambda text: text + "=" * (-len(text) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(header))), json.loads(
        base64.urlsafe_b64decode(pad(claims))
    )


def resigned(cluster: Cluster, token: str, **changes: Any) -> str:
    """The token with changed claims, signed again with the cluster's own signing key: valid in
    every way but the changes (used to make a genuinely expired token)."""
    header, claims = _claims(token)
    claims.update(changes)
    key = serialization.load_pem_private_key(cluster.sa_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def setup(
    pod_identity: PodIdentity, make_namespace: Callable[..., Namespace]
) -> Iterator[tuple[Any, Namespace, dict[str, Any]]]:
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    pod_identity.associate(ns, "app", role("e2e-app"))
    pod = pod_identity.pod(ns, "web")
    agent_token = pod_identity.agent_token_file("node-a").read_text(encoding="utf-8")
    client = eks_auth(pod_identity.broker, agent_token)
    token = pod_identity.pod_token(ns, pod)
    wait_until(
        lambda: client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token),
        timeout=10,
        what="the association to reach the broker",
    )
    yield client, ns, pod
    client.close()


def refused(client: Any, token: str, **extra: str) -> tuple[str, int, str]:
    return error_of(
        lambda: client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token, **extra)
    )


def test_expired_token(pod_identity: PodIdentity, setup: Any) -> None:
    client, ns, pod = setup
    token = pod_identity.pod_token(ns, pod)
    now = int(time.time())
    expired = resigned(pod_identity.cluster, token, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    code, status, message = refused(client, expired)
    assert (code, status) == ("ExpiredTokenException", 400), message


def test_wrong_audience(pod_identity: PodIdentity, setup: Any) -> None:
    client, ns, pod = setup
    for audience in ("sts.amazonaws.com", AGENT_AUDIENCE):
        token = pod_identity.pod_token(ns, pod, audience=audience)
        code, status, message = refused(client, token)
        assert (code, status) == ("InvalidTokenException", 400), message


def test_forged_token(pod_identity: PodIdentity, setup: Any) -> None:
    client, ns, pod = setup
    token = pod_identity.pod_token(ns, pod)
    header, claims, signature = token.split(".")
    _, decoded = _claims(token)
    decoded["sub"] = decoded["sub"].replace(":app", ":admin")
    forged = f"{header}.{_b64(json.dumps(decoded).encode())}.{signature}"
    assert refused(client, forged)[:2] == ("InvalidTokenException", 400)
    assert refused(client, f"{header}.{claims}.{_b64(b'not a signature')}")[:2] == (
        "InvalidTokenException",
        400,
    )


def test_token_of_another_namespace_gets_nothing_of_this_one(
    pod_identity: PodIdentity, setup: Any, make_namespace: Callable[..., Namespace]
) -> None:
    client, _, _ = setup
    other = make_namespace(webhook=None)
    other.service_account("app")  # same name, no association there
    pod = pod_identity.pod(other, "web")
    code, status, message = refused(client, pod_identity.pod_token(other, pod))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert f"{other.name}/app" in message


def test_deleted_pod(pod_identity: PodIdentity, setup: Any) -> None:
    client, ns, _ = setup
    pod = pod_identity.pod(ns, "short-lived")
    token = pod_identity.pod_token(ns, pod)
    client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token)
    pod_identity.kube.delete(ns.pod_path("short-lived") + "?gracePeriodSeconds=0")
    wait_until(
        lambda: refused(client, token)[0] == "InvalidTokenException",
        timeout=10,
        what="the deleted Pod's token to be refused",
    )


def test_node_bound_and_unbound_tokens_are_not_pod_tokens(
    pod_identity: PodIdentity, setup: Any
) -> None:
    client, ns, _ = setup
    node = pod_identity.kube.get("/api/v1/nodes/node-a")
    node_token = pod_identity.token(ns.name, "app", node, kind="Node")
    _, claims = _claims(node_token)
    assert claims["kubernetes.io"]["node"]["name"] == "node-a"  # the API server bound it
    code, _, message = refused(client, node_token)
    assert code == "InvalidTokenException"
    assert "not bound to a Pod" in message
    unbound = pod_identity.token(ns.name, "app", None)
    assert refused(client, unbound)[0] == "InvalidTokenException"


def test_pod_tokens_carry_the_node_and_the_broker_checks_it(
    pod_identity: PodIdentity, setup: Any
) -> None:
    _, ns, pod = setup
    token = pod_identity.pod_token(ns, pod)
    _, claims = _claims(token)
    assert claims["kubernetes.io"]["node"]["name"] == "node-a"  # ServiceAccountTokenPodNodeInfo
    other_agent = pod_identity.agent_token_file("node-b").read_text(encoding="utf-8")
    client_b = eks_auth(pod_identity.broker, other_agent)
    code, status, message = refused(client_b, token)
    client_b.close()
    assert (code, status) == ("AccessDeniedException", 400)
    assert "caller's node" in message
    client, _, _ = setup
    assert refused(client, token, eksNodeName="node-b")[0] == "AccessDeniedException"


def test_callers_must_be_node_agents(pod_identity: PodIdentity, setup: Any) -> None:
    _, ns, pod = setup
    token = pod_identity.pod_token(ns, pod)
    signed = eks_auth(pod_identity.broker, None)  # SigV4, as AWS's agent calls EKS
    code, _, message = refused(signed, token)
    signed.close()
    assert code == "AccessDeniedException"
    assert "require-agent-token=false" in message
    impostor = eks_auth(pod_identity.broker, pod_identity.pod_token(ns, pod, AGENT_AUDIENCE))
    code, _, message = refused(impostor, token)
    impostor.close()
    assert code == "AccessDeniedException"
    assert "not a node agent" in message


def test_aws_agent_mode_accepts_signed_callers_and_still_checks_the_named_node(
    pod_identity: PodIdentity, setup: Any
) -> None:
    _, ns, pod = setup
    broker = pod_identity.spawn_broker("broker-aws-agent", "--require-agent-token=false")
    signed = eks_auth(broker, None)
    token = pod_identity.pod_token(ns, pod)
    answer = wait_until(
        lambda: signed.assume_role_for_pod_identity(
            clusterName=CLUSTER_NAME, token=token, eksNodeName="node-a"
        ),
        timeout=10,
        what="the second broker to know the association",
    )
    assert answer["subject"]["serviceAccount"] == "app"
    assert refused(signed, token, eksNodeName="node-b")[0] == "AccessDeniedException"
    signed.close()
    broker.process.stop()
