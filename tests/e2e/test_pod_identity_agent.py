"""The node agent with the SDK on the other end: boto3's container credential provider reads
credentials for a Pod token from the real API server, calls STS (moto) with them, and refreshes
them before they expire."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.cluster import Namespace
from tests.e2e.podidentity import REGION, PodIdentity, role
from tests.e2e.processes import wait_until

pytestmark = pytest.mark.e2e


def sdk_session(url: str, token_file: Path, monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    """A boto3 session whose only credential source is the container provider (as in a Pod
    mutated by the webhook: AWS_CONTAINER_CREDENTIALS_FULL_URI and the token file)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
    return boto3.Session(region_name=REGION)


def pod_with_token(
    pod_identity: PodIdentity, ns: Namespace, name: str, tmp_path: Path
) -> tuple[dict[str, Any], Path]:
    pod = pod_identity.pod(ns, name)
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(pod_identity.pod_token(ns, pod), encoding="utf-8")
    return pod, token_file


def test_boto3_gets_the_role_through_the_agent(
    pod_identity: PodIdentity,
    make_namespace: Callable[..., Namespace],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    pod_identity.associate(ns, "app", role("e2e-app"))
    pod, token_file = pod_with_token(pod_identity, ns, "sdk", tmp_path)
    agent = pod_identity.spawn_agent(
        pod_identity.broker, pod_identity.agent_token_file("node-a"), node="node-a"
    )
    session = sdk_session(agent.url, token_file, monkeypatch)
    sts = session.client("sts", endpoint_url=pod_identity.sts_url)
    identity = wait_until(sts.get_caller_identity, timeout=15, what="credentials through the agent")
    credentials = session.get_credentials()
    assert credentials.method == "container-role"
    session_name = f"eks-e2e-cluste-sdk-{pod['metadata']['uid']}"
    assert identity["Arn"] == f"arn:aws:sts::111122223333:assumed-role/e2e-app/{session_name}"
    assert identity["Account"] == "111122223333"
    print(
        "get-caller-identity through the agent:",
        json.dumps({k: identity[k] for k in ("UserId", "Account", "Arn")}),
    )
    metrics = agent.metrics()
    assert 'pod_identity_agent_credentials_total{source="broker"} 1.0' in metrics
    assert agent.process.stop() == 0  # SIGTERM: a graceful shutdown
    frozen = credentials.get_frozen_credentials()
    log = agent.process.log_path.read_text(encoding="utf-8")
    for secret in (token_file.read_text(encoding="utf-8"), frozen.secret_key, frozen.token):
        assert secret not in log


def test_the_sdk_refreshes_before_expiry(
    pod_identity: PodIdentity,
    make_namespace: Callable[..., Namespace],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Fifteen-minute sessions (STS's minimum) renewed by the broker and the agent a few seconds
    # after they were issued: the SDK, which refreshes 15 minutes before expiry, asks the agent
    # again on its next use and gets new credentials from a new STS call.
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    pod_identity.associate(ns, "app", role("e2e-app"))
    _, token_file = pod_with_token(pod_identity, ns, "refresh", tmp_path)
    broker = pod_identity.spawn_broker(
        "broker-short", "--session-duration=900", "--refresh-margin=894s"
    )
    agent = pod_identity.spawn_agent(
        broker, pod_identity.agent_token_file("node-a"), "--refresh-margin=896s"
    )
    session = sdk_session(agent.url, token_file, monkeypatch)
    credentials = wait_until(
        lambda: session.get_credentials().get_frozen_credentials(),
        timeout=15,
        what="first credentials",
    )
    sent = len(pod_identity.sts_requests())
    time.sleep(7)
    provider = session.get_credentials()
    renewed = provider.get_frozen_credentials()
    assert renewed.access_key != credentials.access_key
    assert len(pod_identity.sts_requests()) == sent + 1
    sts = session.client("sts", endpoint_url=pod_identity.sts_url)
    assert ":assumed-role/e2e-app/" in sts.get_caller_identity()["Arn"]
    agent.process.stop()
    broker.process.stop()
