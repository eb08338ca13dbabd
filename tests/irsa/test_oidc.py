"""webhook.irsa.oidc: the issuers kube-apiserver and STS accept, and the discovery document."""

from __future__ import annotations

import pytest

from tests.support.irsa import ISSUER
from webhook.irsa import oidc as irsa_oidc
from webhook.irsa.oidc import discovery_document, s3_location


@pytest.mark.parametrize(
    "issuer",
    [
        "http://oidc.example.com",
        "HTTPS://oidc.example.com",
        "oidc.example.com",
        "https://",
        "https://oidc.example.com?x=1",
        "https://oidc.example.com/#frag",
        "https://user@oidc.example.com",
        "https://oidc.example.com:99999",
        "https://oidc.example.com/a b",
    ],
)
def test_unusable_issuers_are_refused(issuer):
    with pytest.raises(ValueError, match="issuer"):
        irsa_oidc.check_issuer(issuer)


def test_discovery_document_has_kube_apiservers_members():
    document = discovery_document(ISSUER, f"{ISSUER}/openid/v1/jwks", ["RS256"])
    assert document == {
        "issuer": ISSUER,
        "jwks_uri": f"{ISSUER}/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def test_jwks_uri_never_doubles_the_slash():
    assert irsa_oidc.jwks_uri_for("https://h/") == "https://h/openid/v1/jwks"
    assert irsa_oidc.jwks_uri_for("https://h/p", "keys.json") == "https://h/p/keys.json"


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://b.s3.us-west-2.amazonaws.com", ("b", "")),
        ("https://b.s3.amazonaws.com/c1", ("b", "c1")),
        ("https://b.s3-eu-west-1.amazonaws.com/a/b/", ("b", "a/b")),
        ("https://s3.us-east-1.amazonaws.com/b/c1", ("b", "c1")),
        ("https://b.s3.cn-north-1.amazonaws.com.cn/x", ("b", "x")),
        ("https://d111111abcdef8.cloudfront.net/c1", (None, "c1")),
        ("https://oidc.example.com", (None, "")),
    ],
)
def test_s3_location_of_an_issuer(issuer, expected):
    assert s3_location(issuer) == expected


def test_issuer_warnings():
    assert irsa_oidc.issuer_warnings(ISSUER) == []
    assert (
        "trailing" in irsa_oidc.issuer_warnings("https://h/")[0]
        or "ends with" in (irsa_oidc.issuer_warnings("https://h/")[0])
    )
    assert "dots" in irsa_oidc.issuer_warnings("https://my.bucket.s3.amazonaws.com")[0]
    assert "255" in irsa_oidc.issuer_warnings("https://h/" + "a" * 300)[0]


def test_previous_issuers_kube_apiserver_accepts():
    for issuer in ("k3s", "https://kubernetes.default.svc.cluster.local", "https://10.0.0.1:6443"):
        assert irsa_oidc.check_previous_issuer(issuer) == issuer


@pytest.mark.parametrize("issuer", [":6443", "://h", "a b", ""])
def test_previous_issuers_kube_apiserver_refuses(issuer):
    with pytest.raises(ValueError):
        irsa_oidc.check_previous_issuer(issuer)
