"""The broker through botocore's own `eks-auth` client, with tokens from the real API server
and moto's STS on loopback: the EKS Auth contract, every error type, and what STS received."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.cluster import Namespace
from tests.e2e.podidentity import (
    CLUSTER_NAME,
    REGION,
    Broker,
    PodIdentity,
    role,
    tags_of,
    transitive_of,
)
from tests.e2e.processes import wait_until

pytestmark = pytest.mark.e2e

TAG_KEYS = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
]


def eks_auth(broker: Broker, agent_token: str | None) -> Any:
    """botocore's eks-auth client aimed at the broker. Unsigned, carrying the agent's token as
    our agent does; or signed with AWS credentials as AWS's agent does when `agent_token` is
    None."""
    session = botocore.session.get_session()
    config = Config(retries={"total_max_attempts": 1})
    if agent_token is None:
        return session.create_client(
            "eks-auth",
            region_name=REGION,
            endpoint_url=broker.url,
            verify=str(broker.ca),
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="node-role-secret-not-real",
            config=config,
        )
    from botocore import UNSIGNED

    client = session.create_client(
        "eks-auth",
        region_name=REGION,
        endpoint_url=broker.url,
        verify=str(broker.ca),
        config=config.merge(Config(signature_version=UNSIGNED)),
    )

    def bearer(request: Any, **_: Any) -> None:
        request.headers["Authorization"] = f"Bearer {agent_token}"

    client.meta.events.register("before-send.eks-auth.AssumeRoleForPodIdentity", bearer)
    return client


@pytest.fixture
def agent_token(pod_identity: PodIdentity) -> str:
    return pod_identity.agent_token_file("node-a").read_text(encoding="utf-8")


@pytest.fixture
def client(pod_identity: PodIdentity, agent_token: str) -> Iterator[Any]:
    client = eks_auth(pod_identity.broker, agent_token)
    yield client
    client.close()


@pytest.fixture
def app_ns(make_namespace: Callable[..., Namespace]) -> Namespace:
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    return ns


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_assume_role_for_pod_identity_sends_eks_session_tags(
    pod_identity: PodIdentity, client: Any, app_ns: Namespace
) -> None:
    pod_identity.associate(app_ns, "app", role("e2e-app"))
    pod = pod_identity.pod(app_ns, "web-1")
    token = pod_identity.pod_token(app_ns, pod)
    sent_before = len(pod_identity.sts_requests())

    answer = wait_until(
        lambda: client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token),
        timeout=10,
        what="the association to reach the broker",
    )

    uid = pod["metadata"]["uid"]
    assert answer["subject"] == {"namespace": app_ns.name, "serviceAccount": "app"}
    assert answer["audience"] == "pods.eks.amazonaws.com"
    association = answer["podIdentityAssociation"]
    assert association["associationId"].startswith("a-")
    assert association["associationArn"].endswith(
        f":podidentityassociation/{CLUSTER_NAME}/{association['associationId']}"
    )
    session = f"eks-{CLUSTER_NAME[:10]}-web-1-{uid}"
    assert answer["assumedRoleUser"]["arn"] == (
        f"arn:aws:sts::111122223333:assumed-role/e2e-app/{session}"
    )
    credentials = answer["credentials"]
    assert credentials["accessKeyId"]
    assert credentials["secretAccessKey"]
    assert credentials["sessionToken"]
    lifetime = credentials["expiration"].timestamp() - time.time()
    assert 3500 < lifetime <= 3600

    (sent,) = pod_identity.sts_requests()[sent_before:]
    assert sent["RoleArn"] == role("e2e-app")
    assert sent["RoleSessionName"] == session
    assert sent["DurationSeconds"] == "3600"
    tags = tags_of(sent)
    assert list(tags) == TAG_KEYS
    assert tags["eks-cluster-name"] == CLUSTER_NAME
    assert tags["eks-cluster-arn"] == f"arn:aws:eks:{REGION}:123456789012:cluster/{CLUSTER_NAME}"
    assert tags["kubernetes-namespace"] == app_ns.name
    assert tags["kubernetes-service-account"] == "app"
    assert tags["kubernetes-pod-name"] == "web-1"
    assert tags["kubernetes-pod-uid"] == uid
    assert transitive_of(sent) == TAG_KEYS
    assert "ExternalId" not in sent
    assert "Policy" not in sent
    print(f"STS received: {json.dumps(sent, indent=1)}")

    # The credentials are STS's: moto knows them as the assumed role's.
    sts = botocore.session.get_session().create_client(
        "sts",
        region_name=REGION,
        endpoint_url=pod_identity.sts_url,
        aws_access_key_id=credentials["accessKeyId"],
        aws_secret_access_key=credentials["secretAccessKey"],
        aws_session_token=credentials["sessionToken"],
    )
    assert sts.get_caller_identity()["Arn"] == answer["assumedRoleUser"]["arn"]

    # A second request for the same Pod comes from the broker's cache: no new STS call.
    again = client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token)
    assert again["credentials"]["accessKeyId"] == credentials["accessKeyId"]
    assert len(pod_identity.sts_requests()) == sent_before + 1

    # The broker writes the association's status.
    def written() -> Any:
        status = pod_identity.association(app_ns, "app").get("status") or {}
        return status if status.get("lastAssumeTime") else None

    status = wait_until(written, timeout=10, what="the association's status")
    assert status["lastAssumedRole"] == role("e2e-app")
    assert status["associationId"] == association["associationId"]

    # Neither the Pod's token nor any part of the credentials reaches the broker's log.
    log = pod_identity.broker.process.log_path.read_text(encoding="utf-8")
    assert '"event":"assumed"' in log
    for secret in (token, credentials["secretAccessKey"], credentials["sessionToken"]):
        assert secret not in log


def test_chaining_sends_the_external_id_and_session_policy_to_the_target_role(
    pod_identity: PodIdentity, client: Any, app_ns: Namespace
) -> None:
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        }
    )
    created = pod_identity.associate(
        app_ns,
        "app",
        role("e2e-hub"),
        targetRoleArn=role("e2e-target", "444455556666"),
        sessionPolicy=policy,
    )
    pod = pod_identity.pod(app_ns, "chained")
    token = pod_identity.pod_token(app_ns, pod)
    sent_before = len(pod_identity.sts_requests())
    answer = wait_until(
        lambda: client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token),
        timeout=10,
        what="the association to reach the broker",
    )
    assert answer["assumedRoleUser"]["arn"].startswith(
        "arn:aws:sts::444455556666:assumed-role/e2e-target/eks-"
    )
    first, second = pod_identity.sts_requests()[sent_before:]
    assert first["RoleArn"] == role("e2e-hub")
    assert list(tags_of(first)) == TAG_KEYS
    assert "ExternalId" not in first
    assert "Policy" not in first
    assert second["RoleArn"] == role("e2e-target", "444455556666")
    assert second["ExternalId"] == created["metadata"]["uid"]  # EKS: one id per association
    assert second["Policy"] == policy
    assert second["RoleSessionName"] == first["RoleSessionName"]
    assert second["DurationSeconds"] == "3600"


def test_disable_session_tags_sends_none(
    pod_identity: PodIdentity, client: Any, app_ns: Namespace
) -> None:
    pod_identity.associate(app_ns, "app", role("e2e-app"), disableSessionTags=True)
    pod = pod_identity.pod(app_ns, "untagged")
    token = pod_identity.pod_token(app_ns, pod)
    before = len(pod_identity.sts_requests())
    wait_until(
        lambda: client.assume_role_for_pod_identity(clusterName=CLUSTER_NAME, token=token),
        timeout=10,
        what="the association to reach the broker",
    )
    (sent,) = pod_identity.sts_requests()[before:]
    assert tags_of(sent) == {}
    assert transitive_of(sent) == []
