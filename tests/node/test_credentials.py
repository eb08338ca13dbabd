"""Credentials that work: a Pod admitted by the webhook gets AWS credentials from STS with the
token the kubelet projected, through the AWS CLI's and boto3's default credential chains."""

from __future__ import annotations

import io
import json

import pytest

from tests.e2e.processes import wait_until
from tests.node.deployment import Deployed
from tests.node.images import Images
from tests.node.node import ISSUER, Node
from tests.node.pods import aws_pod, json_documents, pod_phase
from tests.node.sts import StsEndpoint
from tests.support.irsa import verify_jwt
from webhook.cli import run

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/node-tier-reader"
POD_TIMEOUT = 120

#: What the Pod runs: the AWS CLI, then boto3, each from its default credential chain.
SCRIPT = """
set -e
env | grep -E '^AWS_(ROLE_ARN|WEB_IDENTITY_TOKEN_FILE)=' | sort
aws sts get-caller-identity --output json
python3 -c 'import boto3, json; i = boto3.client("sts").get_caller_identity(); i.pop("ResponseMetadata"); print(json.dumps(i))'
"""


def test_pod_gets_credentials_from_sts_with_the_projected_token(
    webhook: Deployed, node: Node, sts: StsEndpoint, images: Images
) -> None:
    ns = node.namespace("credentials")
    ns.service_account("reader", {"eks.amazonaws.com/role-arn": ROLE})
    node.admin.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "sts-ca", "namespace": ns.name},
            "data": {"ca.crt": sts.ca.cert.decode()},
        }
    )
    stored = ns.run(aws_pod("aws", images, sts, service_account="reader", script=SCRIPT))
    env = {e["name"]: e.get("value") for e in stored["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == ROLE

    phase = wait_until(
        lambda: pod_phase(node, ns.name, "aws"), timeout=POD_TIMEOUT, what="the AWS Pod to end"
    )
    logs = node.kubectl("-n", ns.name, "logs", "aws")
    assert phase == "Succeeded", logs
    print(f"\nget-caller-identity inside the Pod:\n{logs}")

    # Both clients, from the injected variables alone, got the assumed role's identity.
    lines = logs.splitlines()
    assert lines[:2] == [
        f"AWS_ROLE_ARN={ROLE}",
        "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    ]
    cli, boto = json_documents(logs)
    for identity in (cli, boto):
        assert identity["Account"] == ACCOUNT
        assert identity["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/node-tier-reader/")

    # What STS received: one AssumeRoleWithWebIdentity per client, for the annotated role,
    # with a token that verifies against the API server's published keys and carries the
    # claims the trust policy from `pod-identity-webhook trust-policy` conditions on.
    calls = sts.requests("AssumeRoleWithWebIdentity")
    assert len(calls) >= 2
    jwks = node.admin.get("/openid/v1/jwks", accept="application/jwk-set+json")
    policy_text, _ = _trust_policy(ns.name).split("\n---\n")
    condition = json.loads(policy_text)["Statement"][0]["Condition"]["StringEquals"]
    host = ISSUER.removeprefix("https://")
    sessions = {identity["Arn"].rsplit("/", 1)[1] for identity in (cli, boto)}
    for call in calls[-2:]:
        form = call["form"]
        assert form["RoleArn"] == ROLE
        assert form["RoleSessionName"] in sessions
        claims = verify_jwt(form["WebIdentityToken"], jwks)
        assert claims["iss"] == ISSUER
        assert claims["aud"] == [condition[f"{host}:aud"]] == ["sts.amazonaws.com"]
        assert claims["sub"] == condition[f"{host}:sub"]
        assert claims["sub"] == f"system:serviceaccount:{ns.name}:reader"
        # The kubelet's token, bound to this very Pod.
        assert claims["kubernetes.io"]["pod"]["name"] == "aws"
        assert claims["kubernetes.io"]["pod"]["uid"] == stored["metadata"]["uid"]
        assert claims["exp"] - claims["iat"] == 86400
    assert len(sts.requests("GetCallerIdentity")) >= 2


def _trust_policy(namespace: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "trust-policy",
        "--provider",
        ISSUER,
        "--account-id",
        ACCOUNT,
        "--service-account",
        f"{namespace}:reader",
        "--role-arn",
        ROLE,
    ]
    assert run(argv, stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()
