"""EKS Pod Identity on the node: a Pod whose ServiceAccount has only a PodIdentityAssociation
(no annotation) runs the AWS CLI and boto3, which get the associated role's credentials from
the node agent (a DaemonSet on the node's network, at 169.254.170.23), which got them from the
broker (a Deployment), which checked the Pod's token with the API server and called STS
AssumeRole with the session tags, using its own credentials from IRSA. STS is moto's server."""

from __future__ import annotations

import pytest

from tests.e2e.processes import wait_until
from tests.node.deployment import NAMESPACE, Deployed
from tests.node.images import Images
from tests.node.node import ISSUER, Node
from tests.node.podidentity import (
    ACCOUNT,
    AGENT,
    AGENT_NAMESPACE,
    BROKER,
    BROKER_ROLE,
    CLUSTER,
    GROUP_VERSION,
    association,
    pod_identity,
)
from tests.node.pods import aws_pod, injected, json_documents, pod_phase
from tests.node.sts import StsEndpoint
from tests.node.test_credentials import POD_TIMEOUT
from tests.support.irsa import verify_jwt

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

ROLE = f"arn:aws:iam::{ACCOUNT}:role/node-tier-s3-reader"
SERVICE_ACCOUNT = "s3-reader"
TOKEN_FILE = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"

#: The AWS CLI v1 and boto3 of /opt/aws (Debian's predate the Pod Identity endpoint), each
#: from its default credential chain.
SCRIPT = """
set -e
env | grep -E '^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE|CONTAINER_[A-Z_]+)=' | sort
/opt/aws/bin/aws sts get-caller-identity --output json
/opt/aws/bin/python -c 'import boto3, json; i = boto3.client("sts").get_caller_identity(); i.pop("ResponseMetadata"); print(json.dumps(i))'
"""


def _tags(form: dict[str, str], prefix: str) -> dict[str, str]:
    """`Tags.member.N.Key/Value` of an STS query request as a dict."""
    found, index = {}, 1
    while f"{prefix}.member.{index}.Key" in form:
        found[form[f"{prefix}.member.{index}.Key"]] = form[f"{prefix}.member.{index}.Value"]
        index += 1
    return found


def _members(form: dict[str, str], prefix: str) -> list[str]:
    found, index = [], 1
    while f"{prefix}.member.{index}" in form:
        found.append(form[f"{prefix}.member.{index}"])
        index += 1
    return found


def test_a_pod_with_only_an_association_gets_the_role_through_agent_and_broker(
    webhook: Deployed, node: Node, sts: StsEndpoint, images: Images
) -> None:
    with pod_identity(webhook, sts):
        ns = node.namespace("pod-identity")
        ns.service_account(SERVICE_ACCOUNT)  # no annotation
        node.admin.create(association(ns.name, SERVICE_ACCOUNT, ROLE))
        node.admin.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "sts-ca", "namespace": ns.name},
                "data": {"ca.crt": sts.ca.cert.decode()},
            }
        )
        wait_until(
            lambda: (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI" in injected(node, ns.name, SERVICE_ACCOUNT)
            ),
            timeout=60,
            what="association mode",
        )
        stored = ns.run(aws_pod("aws", images, sts, service_account=SERVICE_ACCOUNT, script=SCRIPT))
        uid = stored["metadata"]["uid"]
        phase = wait_until(
            lambda: pod_phase(node, ns.name, "aws"), timeout=POD_TIMEOUT, what="the Pod to end"
        )
        logs = node.kubectl("-n", ns.name, "logs", "aws")
        assert phase == "Succeeded", logs + _component_logs(node)
        print(f"\nget-caller-identity inside the Pod (association only):\n{logs}")

        # Only the container-credentials variables: no web identity for this Pod.
        assert logs.splitlines()[:2] == [
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + TOKEN_FILE,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials",
        ]
        session = f"eks-{CLUSTER}-aws-{uid}"
        for identity in json_documents(logs):
            assert identity["Account"] == ACCOUNT
            assert (
                identity["Arn"]
                == f"arn:aws:sts::{ACCOUNT}:assumed-role/node-tier-s3-reader/{session}"
            )

        # STS received one AssumeRole for this Pod (the agent's cache served the second
        # client), with EKS's six session tags, all transitive.
        calls = [c["form"] for c in sts.requests("AssumeRole") if c["form"].get("RoleArn") == ROLE]
        assert len(calls) == 1, calls
        (form,) = calls
        assert form["RoleSessionName"] == session
        tags = _tags(form, "Tags")
        print(f"session tags STS received: {tags}")
        assert tags.pop("eks-cluster-arn").startswith("arn:aws:eks:us-east-1:")
        assert tags == {
            "eks-cluster-name": CLUSTER,
            "kubernetes-namespace": ns.name,
            "kubernetes-service-account": SERVICE_ACCOUNT,
            "kubernetes-pod-name": "aws",
            "kubernetes-pod-uid": uid,
        }
        assert set(_members(form, "TransitiveTagKeys")) == {*tags, "eks-cluster-arn"}

        # The broker's own credentials: web identity with its projected token, for its role.
        jwks = node.admin.get("/openid/v1/jwks", accept="application/jwk-set+json")
        web = [c["form"] for c in sts.requests("AssumeRoleWithWebIdentity")]
        assert not [f for f in web if f["RoleArn"] == ROLE]  # the Pod never had a web identity
        broker = [f for f in web if f["RoleArn"] == BROKER_ROLE]
        assert broker
        claims = verify_jwt(broker[-1]["WebIdentityToken"], jwks)
        assert claims["iss"] == ISSUER
        assert claims["aud"] == ["sts.amazonaws.com"]
        assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:{BROKER}"

        # The broker wrote the association's status.
        status = node.admin.get(
            f"/apis/{GROUP_VERSION}/namespaces/{ns.name}/podidentityassociations/{SERVICE_ACCOUNT}"
        ).get("status", {})
        assert status.get("lastAssumedRole") == ROLE, status
        assert status.get("lastAssumeTime")


def _component_logs(node: Node) -> str:
    """The broker's and the agent's last lines, for a failure's message."""
    return "\n" + "\n".join(
        node.kubectl("-n", ns, "logs", "-l", f"app={app}", "--tail=30", "--prefix", check=False)
        for ns, app in ((NAMESPACE, BROKER), (AGENT_NAMESPACE, AGENT))
    )
