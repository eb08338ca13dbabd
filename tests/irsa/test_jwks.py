"""webhook.irsa.jwks: signing keys in, key IDs and the JWKS out, identical to kube-apiserver's.

The reference documents in tests/data/oidc come from kube-apiserver's own code (see its
README), so equality with them means a token the API server signs verifies against what we
publish.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.irsa import (
    DATA,
    PrivateKey,
    b64url,
    b64url_decode,
    certificate_pem,
    compact,
    der_kid,
    private_pem,
    public_pem,
)
from webhook.errors import ConfigError
from webhook.irsa import oidc as irsa_oidc
from webhook.irsa.jwks import (
    PublishedKey,
    jwk_from_public_key,
    jwks_document,
    key_id,
    load_pem_keys,
    parse_jwks,
    signing_algorithms,
    unique_keys,
)
from webhook.irsa.oidc import discovery_document


def published(*keys: PrivateKey) -> list[PublishedKey]:
    return [PublishedKey(k.public_key(), key_id(k.public_key())) for k in keys]


# --- kid and JWKS: identical to kube-apiserver ---------------------------------------------------


def test_kid_is_kube_apiservers_stable_key_id():
    # Kubernetes' TestKeyIDStability pins these: changing them would orphan issued tokens.
    (rsa_key,), _ = load_pem_keys((DATA / "k8s-rsa-public.pem").read_bytes(), "rsa")
    (ec_key,), _ = load_pem_keys((DATA / "k8s-ecdsa-public.pem").read_bytes(), "ec")
    assert key_id(rsa_key) == "JHJehTTTZlsspKHT-GaJxK7Kd1NQgZJu3fyK6K_QDYU"
    assert key_id(ec_key) == "SoABiieYuNx4UdqYvZRVeuC6SihxgLrhLy9peHMHpTc"


@pytest.mark.parametrize("kind", ["public", "private"])
def test_documents_equal_kube_apiservers_byte_for_byte(kind):
    loaded = []
    for name in (f"k8s-rsa-{kind}.pem", f"k8s-ecdsa-{kind}.pem"):
        found, warnings = load_pem_keys((DATA / name).read_bytes(), name)
        assert warnings == []
        loaded += [PublishedKey(k, key_id(k)) for k in found]
    issuer = "https://issuer.example.com"
    assert compact(jwks_document(loaded)) == (DATA / "k8s-jwks.json").read_text()
    config = discovery_document(issuer, irsa_oidc.jwks_uri_for(issuer), signing_algorithms(loaded))
    assert compact(config) == (DATA / "k8s-openid-configuration.json").read_text()


def test_rsa3072_p384_p521_documents_equal_kube_apiservers():
    found, _ = load_pem_keys((DATA / "go-keys.pem").read_bytes(), "go-keys.pem")
    loaded = [PublishedKey(k, key_id(k)) for k in found]
    assert compact(jwks_document(loaded)) == (DATA / "go-jwks.json").read_text()
    issuer = "https://oidc.example.com/cluster"
    config = discovery_document(issuer, irsa_oidc.jwks_uri_for(issuer), signing_algorithms(loaded))
    assert compact(config) == (DATA / "go-openid-configuration.json").read_text()


@pytest.mark.parametrize("name", ["rsa2048", "rsa3072", "p256", "p384", "p521"])
def test_kid_is_sha256_of_the_der_public_key(keys, name):
    public = keys[name].public_key()
    assert key_id(public) == der_kid(public)
    assert len(b64url_decode(key_id(public))) == 32


@pytest.mark.parametrize("name", ["rsa2048", "rsa3072"])
def test_rsa_jwk_members(keys, name):
    public = keys[name].public_key()
    jwk = jwk_from_public_key(public)
    assert list(jwk) == ["use", "kty", "kid", "alg", "n", "e"]
    assert jwk["use"] == "sig"
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["kid"] == der_kid(public)
    assert jwk["e"] == "AQAB"
    n = b64url_decode(jwk["n"])
    assert n[0] != 0  # minimal big-endian, no sign byte
    assert int.from_bytes(n, "big") == public.public_numbers().n
    assert len(n) * 8 == public.key_size


@pytest.mark.parametrize(
    ("name", "crv", "alg", "size"),
    [
        ("p256", "P-256", "ES256", 32),
        ("p384", "P-384", "ES384", 48),
        ("p521", "P-521", "ES512", 66),
    ],
)
def test_ec_jwk_members(keys, name, crv, alg, size):
    public = keys[name].public_key()
    jwk = jwk_from_public_key(public)
    assert list(jwk) == ["use", "kty", "kid", "crv", "alg", "x", "y"]
    assert (jwk["use"], jwk["kty"], jwk["crv"], jwk["alg"]) == ("sig", "EC", crv, alg)
    assert jwk["kid"] == der_kid(public)
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    assert len(x) == len(y) == size  # fixed length, leading zeros kept
    numbers = public.public_numbers()
    assert (int.from_bytes(x, "big"), int.from_bytes(y, "big")) == (numbers.x, numbers.y)


def test_short_ec_coordinates_keep_their_leading_zeros():
    # Find a P-256 key whose x has a leading zero byte (1 in 256 keys; bounded search).
    for _ in range(4096):
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        if public.public_numbers().x < 1 << 248:
            break
    else:  # pragma: no cover - astronomically unlikely
        pytest.skip("no short coordinate found")
    x = b64url_decode(jwk_from_public_key(public)["x"])
    assert len(x) == 32
    assert x[0] == 0


# --- PEM input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "form"),
    [
        *(("rsa2048", form) for form in ("pkix", "pkcs1", "pkcs8", "traditional", "certificate")),
        *(("p256", form) for form in ("pkix", "pkcs8", "traditional", "certificate")),
    ],
)
def test_every_pem_form_gives_the_same_key(keys, name, form):
    key = keys[name]
    data = {
        "pkix": lambda: public_pem(key),
        "pkcs1": lambda: public_pem(key, "pkcs1"),
        "pkcs8": lambda: private_pem(key),
        "traditional": lambda: private_pem(key, "traditional"),
        "certificate": lambda: certificate_pem(key),
    }[form]()
    found, _ = load_pem_keys(data, "key.pem")
    assert len(found) == 1
    assert key_id(found[0]) == der_kid(key.public_key())
    assert not hasattr(found[0], "private_numbers")


@pytest.mark.parametrize(
    ("name", "form"), [("rsa2048", "pkcs1-public"), ("p256", "pkcs8"), ("p384", "pkcs8")]
)
def test_forms_kube_apiserver_ignores_in_key_files_are_published_with_a_warning(keys, name, form):
    # client-go keyutil.ParsePublicKeysPEM skips PKCS#1 public keys and PKCS#8 EC private keys.
    data = public_pem(keys[name], "pkcs1") if form == "pkcs1-public" else private_pem(keys[name])
    found, warnings = load_pem_keys(data, "sa.pem")
    assert len(found) == 1
    assert len(warnings) == 1
    assert "kube-apiserver ignores" in warnings[0]
    assert "openssl pkey" in warnings[0]


@pytest.mark.parametrize("name", ["rsa2048", "p256"])
@pytest.mark.parametrize("form", ["pkix", "traditional"])
def test_forms_kube_apiserver_reads_give_no_warning(keys, name, form):
    data = public_pem(keys[name]) if form == "pkix" else private_pem(keys[name], "traditional")
    assert load_pem_keys(data, "sa.pem")[1] == []


def test_several_keys_in_one_file_keep_their_order(keys):
    data = public_pem(keys["p384"]) + private_pem(keys["rsa3072"], "traditional")
    found, _ = load_pem_keys(data, "rotation.pem")
    assert [key_id(k) for k in found] == [
        der_kid(keys["p384"].public_key()),
        der_kid(keys["rsa3072"].public_key()),
    ]


def test_openssl_ecparam_output_is_read(keys):
    # `openssl ecparam -name prime256v1 -genkey` writes the curve parameters first.
    params = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    found, warnings = load_pem_keys(params + private_pem(keys["p256"], "traditional"), "ec.key")
    assert [key_id(k) for k in found] == [der_kid(keys["p256"].public_key())]
    assert warnings == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a key", "not a PEM file"),
        (b"", "not a PEM file"),
        (
            b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
            "no public or private key",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid public key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a valid private key",
        ),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid cert"),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
    ],
)
def test_bad_pem_is_a_config_error(data, message):
    with pytest.raises(ConfigError, match=message):
        load_pem_keys(data, "bad.pem")


def test_encrypted_private_key_is_refused(keys):
    data = keys["rsa2048"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ConfigError, match="encrypted"):
        load_pem_keys(data, "sa.key")


def test_weak_rsa_key_is_refused():
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - must be refused
    with pytest.raises(ConfigError, match="1024 bits is too weak; use at least 2048"):
        load_pem_keys(public_pem(weak), "weak.pub")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519 keys are not supported"),
        (ec.generate_private_key(ec.SECP256K1()), "curve secp256k1 is not supported"),
    ],
)
def test_keys_kube_apiserver_cannot_sign_with_are_refused(key, message):
    data = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ConfigError, match=message):
        load_pem_keys(data, "k.pub")


def test_duplicate_keys_collapse_by_kid(keys):
    items = published(keys["rsa2048"], keys["p256"], keys["rsa2048"])
    assert [i.kid for i in unique_keys(items)] == [items[0].kid, items[1].kid]


def test_two_keys_under_one_kid_is_an_error(keys):
    items = [
        PublishedKey(keys["rsa2048"].public_key(), "same"),
        PublishedKey(keys["p256"].public_key(), "same"),
    ]
    with pytest.raises(ConfigError, match="same kid 'same'"):
        unique_keys(items)


def test_signing_algorithms_are_distinct_and_sorted(keys):
    items = published(keys["rsa2048"], keys["p384"], keys["rsa3072"], keys["p256"])
    assert signing_algorithms(items) == ["ES256", "ES384", "RS256"]


# --- JWKS input -------------------------------------------------------------------------------


def test_jwks_from_the_api_server_round_trips():
    text = (DATA / "k8s-jwks.json").read_text()
    found, warnings = parse_jwks(text, "jwks.json")
    assert warnings == []
    assert compact(jwks_document(found)) == text


def test_jwks_without_kid_or_alg_gets_kube_apiservers(keys):
    jwk = jwk_from_public_key(keys["p256"].public_key())
    del jwk["kid"], jwk["alg"], jwk["use"]
    (item,), _ = parse_jwks(json.dumps({"keys": [jwk]}), "jwks.json")
    assert item.kid == der_kid(keys["p256"].public_key())


def test_jwks_with_a_foreign_kid_keeps_it_with_a_warning(keys):
    jwk = jwk_from_public_key(keys["rsa2048"].public_key(), kid="my-own-kid")
    (item,), warnings = parse_jwks(json.dumps({"keys": [jwk]}), "jwks.json")
    assert item.kid == "my-own-kid"
    assert len(warnings) == 1
    assert der_kid(keys["rsa2048"].public_key()) in warnings[0]


def test_padded_base64_is_accepted_and_re_emitted_unpadded(keys):
    jwk = jwk_from_public_key(keys["rsa2048"].public_key())
    jwk["n"] += "=" * (-len(jwk["n"]) % 4)
    (item,), _ = parse_jwks(json.dumps({"keys": [jwk]}), "jwks.json")
    assert "=" not in jwk_from_public_key(item.key)["n"]


def _jwk(keys, name: str, **changes: Any) -> str:
    jwk: dict[str, Any] = dict(jwk_from_public_key(keys[name].public_key()))
    for member, value in changes.items():
        if value is None:
            jwk.pop(member)
        else:
            jwk[member] = value
    return json.dumps({"keys": [jwk]})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda _k: "{", "not JSON"),
        (lambda _k: "[]", "not a JWKS"),
        (lambda _k: '{"keys": []}', "empty"),
        (lambda _k: '{"keys": ["x"]}', "not a JSON object"),
        (lambda k: _jwk(k, "rsa2048", d="AAAA"), "private key material"),
        (lambda k: _jwk(k, "p256", d="AAAA"), "private key material"),
        (lambda k: _jwk(k, "rsa2048", kty="oct"), "key type 'oct'"),
        (lambda k: _jwk(k, "rsa2048", n=None), "'n' is missing"),
        (lambda k: _jwk(k, "rsa2048", n="***"), "not base64url"),
        (lambda k: _jwk(k, "rsa2048", e="=="), "'e' is empty"),
        (lambda k: _jwk(k, "rsa2048", e=b64url(b"\x02")), "not a valid RSA public key"),
        (lambda k: _jwk(k, "rsa2048", alg="RS512"), "alg 'RS512' does not fit"),
        (lambda k: _jwk(k, "rsa2048", use="enc"), '"use" is'),
        (lambda k: _jwk(k, "rsa2048", kid=""), "kid"),
        (lambda k: _jwk(k, "p256", crv="P-192"), "curve 'P-192'"),
        (lambda k: _jwk(k, "p256", x="AAAA"), "32 bytes"),
        (lambda k: _jwk(k, "p256", y=b64url(b"\x01" * 32)), "not on curve"),
    ],
)
def test_bad_jwks_is_a_config_error(keys, build, message):
    with pytest.raises(ConfigError, match=message):
        parse_jwks(build(keys), "jwks.json")


def test_weak_rsa_in_a_jwks_is_refused():
    weak = rsa.generate_private_key(65537, 1024).public_key()  # noqa: S505 - must be refused
    with pytest.raises(ConfigError, match="too weak"):
        parse_jwks(json.dumps({"keys": [jwk_from_public_key(weak)]}), "jwks.json")
