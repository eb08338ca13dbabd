"""AWS-free check of the injected token: what STS would verify, checked against the cluster."""

from __future__ import annotations

import json

import pytest
from cryptography.exceptions import InvalidSignature

from tests.e2e.cluster import Cluster, Namespace
from tests.e2e.helpers import AUDIENCE, ROLE_ARN, TOKEN_EXPIRATION, pod, token_source
from tests.support.irsa import b64url, jwt_header, verify_jwt
from tests.support.reviews import ROLE

pytestmark = pytest.mark.e2e


def test_token_for_the_injected_volume_verifies_like_sts_would(
    ns: Namespace, cluster: Cluster
) -> None:
    ns.service_account(
        "app", {ROLE_ARN: ROLE, AUDIENCE: "sts.amazonaws.com", TOKEN_EXPIRATION: "3600"}
    )
    stored = ns.run(pod("token"))
    source = token_source(stored)
    audience, expiration = source["audience"], source["expirationSeconds"]
    assert (audience, expiration) == ("sts.amazonaws.com", 3600)

    # What the kubelet asks for to fill the projected volume: a token bound to the Pod.
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience],
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": "token",
                "uid": stored["metadata"]["uid"],
            },
        },
    }
    answer = cluster.admin.request(
        "POST", f"/api/v1/namespaces/{ns.name}/serviceaccounts/app/token", request
    ).body
    token = answer["status"]["token"]

    # STS reads the issuer's discovery document and its JWKS (AWS-free here).
    discovery = cluster.admin.get("/.well-known/openid-configuration")
    assert discovery["issuer"] == cluster.issuer
    assert discovery["jwks_uri"].startswith(cluster.issuer)
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    jwks = cluster.admin.get("/openid/v1/jwks", accept="application/jwk-set+json")
    assert jwt_header(token)["alg"] == "RS256"
    claims = verify_jwt(token, jwks)

    assert claims["iss"] == cluster.issuer
    assert claims["aud"] == [audience]
    assert claims["sub"] == f"system:serviceaccount:{ns.name}:app"
    assert claims["exp"] - claims["iat"] == expiration
    assert claims["nbf"] <= claims["iat"]
    kubernetes = claims["kubernetes.io"]
    assert kubernetes["namespace"] == ns.name
    assert kubernetes["pod"] == {"name": "token", "uid": stored["metadata"]["uid"]}

    # A token altered after signing does not verify.
    header_b64, _, signature_b64 = token.split(".")
    forged = json.dumps({**claims, "sub": "system:serviceaccount:kube-system:admin"}).encode()
    forged_b64 = b64url(forged)
    with pytest.raises(InvalidSignature):
        verify_jwt(f"{header_b64}.{forged_b64}.{signature_b64}", jwks)
