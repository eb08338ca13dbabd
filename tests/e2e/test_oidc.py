"""Self-hosted IRSA helpers against the real API server: what we publish is what it signs with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.cluster import Cluster, Namespace, client_context, https_get
from tests.e2e.helpers import ROLE_ARN
from tests.e2e.kube import Kube, configuration
from tests.e2e.processes import Process, wait_until
from tests.support.irsa import verify_jwt
from tests.support.ports import free_port
from tests.support.reviews import ROLE
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
    claims = verify_jwt(token, ours_jwks)

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


def _api_server(
    cluster: Cluster, workdir: Path, name: str, flags: list[str]
) -> tuple[Process, int]:
    """Another kube-apiserver on the cluster's etcd with these service-account flags; its port."""
    port = free_port()
    process = Process(
        name,
        [
            str(cluster.binaries.kube_apiserver),
            f"--etcd-servers={cluster.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={workdir / name}",
            f"--tls-cert-file={cluster.apiserver_cert.cert_path}",
            f"--tls-private-key-file={cluster.apiserver_cert.key_path}",
            f"--client-ca-file={cluster.cluster_ca.cert_path}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            *flags,
        ],
        workdir / f"{name}.log",
        env=cluster.env,
    )
    context = client_context(
        cluster.cluster_ca.cert_path, cluster.admin_cert.cert_path, cluster.admin_cert.key_path
    )
    try:
        wait_until(
            lambda: https_get(port, "/readyz", context)[0] == 200,
            timeout=45.0,
            what=f"{name} /readyz",
            alive=lambda: None if process.running else f"{name} exited; see {process.log_path}",
        )
    except BaseException:
        process.stop()
        raise
    return process, port


def _authenticated(kube: Kube, token: str) -> bool:
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    answer = kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", review)
    return bool(answer.body["status"].get("authenticated"))


def _admin(cluster: Cluster, port: int) -> Kube:
    return Kube(
        configuration(
            f"https://127.0.0.1:{port}",
            cluster.cluster_ca.cert_path,
            cluster.admin_cert.cert_path,
            cluster.admin_cert.key_path,
        )
    )


def test_two_issuer_flags_keep_the_running_clusters_tokens_valid(
    ns: Namespace, cluster: Cluster, tmp_path: Path
) -> None:
    """`oidc --print-apiserver-flags --previous-issuer`, given to a real kube-apiserver: it signs
    with the new issuer and still accepts the tokens Pods got before; the one-issuer form does
    not (the reason for the option)."""
    ns.service_account("app", {ROLE_ARN: ROLE})
    path = f"/api/v1/namespaces/{ns.name}/serviceaccounts/app/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    # A token a Pod holds today: issued by the running cluster, for its default audience.
    old_token = cluster.admin.request("POST", path, request).body["status"]["token"]
    new_issuer = "https://irsa-e2e.s3.us-west-2.amazonaws.com/cluster1"

    def printed(*extra: str) -> list[str]:
        text = _command(
            "oidc",
            "--print-apiserver-flags",
            f"--issuer={new_issuer}",
            f"--key={cluster.sa_key}",
            f"--signing-key={cluster.sa_key}",
            *extra,
        )
        return [line for line in text.splitlines() if line.startswith("--")]

    jwks = cluster.admin.get("/openid/v1/jwks", accept="application/jwk-set+json")
    for name, flags, old_accepted in (
        ("apiserver-one-issuer", printed(), False),
        ("apiserver-two-issuers", printed(f"--previous-issuer={cluster.issuer}"), True),
    ):
        process, port = _api_server(cluster, tmp_path, name, flags)
        kube = _admin(cluster, port)
        try:
            assert _authenticated(kube, old_token) is old_accepted, name
            new_token = kube.request("POST", path, request).body["status"]["token"]
            claims = verify_jwt(new_token, jwks)
            assert claims["iss"] == new_issuer
            assert _authenticated(kube, new_token)
        finally:
            kube.close()
            process.stop()
