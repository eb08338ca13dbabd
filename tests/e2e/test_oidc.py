"""Self-hosted IRSA helpers against the real API server: what we publish is what it signs with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster, Namespace
from tests.e2e.helpers import ROLE, ROLE_ARN
from tests.e2e.test_token import _verify
from webhook.cli import run

pytestmark = pytest.mark.e2e


def _command(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert run(list(argv), stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


def test_published_documents_match_the_api_server_and_verify_its_tokens(
    ns: Namespace, cluster: Cluster, tmp_path: Path
) -> None:
    _command(
        "oidc", "--issuer", cluster.issuer, "--key", str(cluster.sa_key), "--dir", str(tmp_path)
    )
    ours_jwks = json.loads((tmp_path / "openid/v1/jwks").read_text())
    ours_discovery = json.loads((tmp_path / ".well-known/openid-configuration").read_text())

    served_jwks = cluster.admin.get("/openid/v1/jwks", accept="application/jwk-set+json")
    served_discovery = cluster.admin.get("/.well-known/openid-configuration")
    assert ours_jwks == served_jwks
    assert ours_discovery["issuer"] == served_discovery["issuer"] == cluster.issuer
    assert ours_discovery["jwks_uri"] == served_discovery["jwks_uri"]

    # A token for an annotated ServiceAccount verifies with our JWKS, and its claims are exactly
    # what the trust policy we print makes STS check.
    ns.service_account("app", {ROLE_ARN: ROLE})
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 3600},
    }
    path = f"/api/v1/namespaces/{ns.name}/serviceaccounts/app/token"
    token = cluster.admin.request("POST", path, request).body["status"]["token"]
    _, claims = _verify(token, ours_jwks)

    printed = _command(
        "trust-policy",
        "--provider",
        cluster.issuer,
        "--account-id",
        "111122223333",
        "--service-account",
        f"{ns.name}:app",
        "--role-arn",
        ROLE,
    )
    policy_text, manifest_text = printed.split("\n---\n")
    condition = json.loads(policy_text)["Statement"][0]["Condition"]["StringEquals"]
    host = cluster.issuer.removeprefix("https://")
    assert condition[f"{host}:aud"] == claims["aud"][0] == "sts.amazonaws.com"
    assert condition[f"{host}:sub"] == claims["sub"] == f"system:serviceaccount:{ns.name}:app"
    assert claims["iss"] == cluster.issuer
    manifest = yaml.safe_load(manifest_text)
    assert manifest["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE
