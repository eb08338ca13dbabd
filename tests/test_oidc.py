"""`oidc` and `trust-policy`: the documents STS reads and the IAM side of IRSA.

The reference documents in tests/data/oidc come from kube-apiserver's own code (see its
README), so equality with them means a token the API server signs verifies against what we
publish. The JWT helpers below are written from the RFCs, independently of webhook.irsa.oidc.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from webhook.cli import oidc
from webhook.cli.oidc import oidc_command
from webhook.cli.trust_policy import trust_policy_command
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
from webhook.irsa.oidc import discovery_document, s3_location
from webhook.irsa.trustpolicy import (
    OidcProvider,
    parse_provider,
    parse_service_account,
    service_account_manifest,
    trust_policy,
)

DATA = Path(__file__).parent / "data" / "oidc"
ISSUER = "https://irsa-demo.s3.us-west-2.amazonaws.com/cluster1"
HOST_PATH = "irsa-demo.s3.us-west-2.amazonaws.com/cluster1"
ACCOUNT = "111122223333"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST_PATH}"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/s3-reader"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- helpers written independently of the module under test ----------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def der_kid(public_key) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(der).digest())


_EC_ALGS = {
    "ES256": (hashes.SHA256, 32),
    "ES384": (hashes.SHA384, 48),
    "ES512": (hashes.SHA512, 66),
}
_CRV = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def alg_of(private_key: PrivateKey) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    return {256: "ES256", 384: "ES384", 521: "ES512"}[private_key.curve.key_size]


def sign_jwt(private_key: PrivateKey, kid: str, claims: dict[str, Any]) -> str:
    """A compact JWS (RFC 7515) as kube-apiserver would produce it."""
    alg = alg_of(private_key)
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    ).encode()
    if isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        digest, size = _EC_ALGS[alg]
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(digest())))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")  # RFC 7518 3.4: r || s
    return signing_input.decode() + "." + b64url(signature)


def verify_jwt(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a relying party such as STS does: find the key by kid, check alg and signature."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    matches = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert len(matches) == 1, f"kid {header['kid']} not in the JWKS exactly once"
    jwk = matches[0]
    assert jwk["use"] == "sig"
    assert jwk["alg"] == header["alg"]
    signing_input = f"{header_b64}.{payload_b64}".encode()
    signature = b64url_decode(signature_b64)
    if jwk["kty"] == "RSA":
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(b64url_decode(jwk["e"]), "big"),
            int.from_bytes(b64url_decode(jwk["n"]), "big"),
        )
        numbers.public_key().verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        digest, size = _EC_ALGS[jwk["alg"]]
        assert len(signature) == 2 * size
        point = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url_decode(jwk["x"]), "big"),
            int.from_bytes(b64url_decode(jwk["y"]), "big"),
            _CRV[jwk["crv"]],
        )
        der = encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        point.public_key().verify(der, signing_input, ec.ECDSA(digest()))
    return dict(json.loads(b64url_decode(payload_b64)))


def public_pem(key: PrivateKey, fmt: str = "pkix") -> bytes:
    public = key.public_key()
    form = {
        "pkix": serialization.PublicFormat.SubjectPublicKeyInfo,
        "pkcs1": serialization.PublicFormat.PKCS1,
    }[fmt]
    return public.public_bytes(serialization.Encoding.PEM, form)


def private_pem(key: PrivateKey, fmt: str = "pkcs8") -> bytes:
    form = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
    }[fmt]
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def certificate_pem(key: PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sa-signer")])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def run(command, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = command(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def published(*keys: PrivateKey) -> list[PublishedKey]:
    return [PublishedKey(k.public_key(), key_id(k.public_key())) for k in keys]


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "rsa2048": rsa.generate_private_key(65537, 2048),
        "rsa3072": rsa.generate_private_key(65537, 3072),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
    }


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


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


def test_tokens_signed_by_kube_apiserver_verify_against_our_jwks(tmp_path):
    status, _, err = run(
        oidc_command,
        "--issuer=https://oidc.example.com/cluster",
        f"--key={DATA / 'go-keys.pem'}",
        f"--dir={tmp_path}",
    )
    assert status == 0, err
    jwks = json.loads((tmp_path / "openid/v1/jwks").read_text())
    algs = []
    for token in (DATA / "go-tokens.txt").read_text().split():
        claims = verify_jwt(token, jwks)
        assert claims["iss"] == "https://oidc.example.com/cluster"
        assert claims["sub"] == "system:serviceaccount:default:app"
        assert claims["aud"] == ["sts.amazonaws.com"]
        algs.append(json.loads(b64url_decode(token.split(".")[0]))["alg"])
    assert algs == ["RS256", "ES384", "ES512"]


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


# --- issuer and discovery document ---------------------------------------------------------------


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


# --- the oidc command -------------------------------------------------------------------------------


def test_oidc_writes_both_documents_and_prints_the_commands(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["rsa2048"]))
    out_dir = tmp_path / "out"
    status, out, err = run(oidc_command, "--issuer", ISSUER, "--key", key, "--dir", str(out_dir))
    assert (status, err) == (0, "")
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    jwks = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert discovery["issuer"] == ISSUER
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    # jwks_uri, relative to the issuer, is exactly where the file was written in the directory.
    relative = discovery["jwks_uri"].removeprefix(ISSUER + "/")
    assert (out_dir / relative).read_text() == (out_dir / "openid/v1/jwks").read_text()
    assert [k["kid"] for k in jwks["keys"]] == [der_kid(keys["rsa2048"].public_key())]
    s3 = "s3://irsa-demo/cluster1/"
    assert (
        f"aws s3 cp {out_dir}/.well-known/openid-configuration {s3}.well-known/openid-configuration"
        " --content-type application/json" in out
    )
    assert (
        f"aws s3 cp {out_dir}/openid/v1/jwks {s3}openid/v1/jwks --content-type application/json"
        in out
    )
    assert "publicly readable" in out
    assert (
        f"aws iam create-open-id-connect-provider --url {ISSUER} --client-id-list sts.amazonaws.com"
        in out
    )
    # An IAM OIDC provider is registered per issuer (in each account that trusts it).
    assert "once per issuer" in out
    assert "once per AWS account" not in out
    assert "thumbprint" in out.lower()
    assert "openssl s_client" not in out  # S3: no thumbprint to compute
    for path in out_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644


def test_oidc_with_private_keys_writes_only_public_material(tmp_path, keys):
    rsa_key = write(tmp_path, "sa.key", private_pem(keys["rsa3072"], "traditional"))
    ec_key = write(tmp_path, "ec.key", private_pem(keys["p384"], "traditional"))
    out_dir = tmp_path / "out"
    status, out, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={rsa_key}",
        f"--key={ec_key}",
        f"--dir={out_dir}",
    )
    assert (status, err) == (0, "")
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert len(files) == 2
    private_values = {
        b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))
        for n in (
            keys["rsa3072"].private_numbers().d,
            keys["rsa3072"].private_numbers().p,
            keys["p384"].private_numbers().private_value,
        )
    }
    for path in files:
        text = path.read_text()
        assert "PRIVATE" not in text
        assert not any(value in text for value in private_values)
    for jwk in json.loads((out_dir / "openid/v1/jwks").read_text())["keys"]:
        assert set(jwk) <= {"use", "kty", "kid", "crv", "alg", "n", "e", "x", "y"}
    assert "PRIVATE" not in out


def test_oidc_rotation_keys_and_duplicates(tmp_path, keys):
    old = write(tmp_path, "old.pub", public_pem(keys["rsa2048"]))
    new = write(tmp_path, "new.key", private_pem(keys["p256"]))
    both = write(tmp_path, "both.pem", public_pem(keys["p256"]) + private_pem(keys["rsa2048"]))
    out_dir = tmp_path / "out"
    status, out, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        *(f"--key={p}" for p in (old, new, both)),
        f"--dir={out_dir}",
    )
    assert status == 0
    # new.key holds a PKCS#8 EC key, which kube-apiserver would skip in a key file.
    assert one_line(err).startswith(f"pod-identity-webhook oidc: warning: {new}: PEM block 1")
    jwks = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [
        der_kid(keys["rsa2048"].public_key()),
        der_kid(keys["p256"].public_key()),
    ]
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert "(2 key(s))" in out


@pytest.mark.parametrize("name", ["rsa2048", "rsa3072", "p256", "p384", "p521"])
def test_token_signed_with_the_private_key_verifies_against_the_published_jwks(
    tmp_path, keys, name
):
    key = keys[name]
    path = write(tmp_path, "sa.key", private_pem(key, "traditional"))
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 0, err
    jwks = json.loads((tmp_path / "openid/v1/jwks").read_text())
    claims = {
        "iss": ISSUER,
        "sub": "system:serviceaccount:default:app",
        "aud": ["sts.amazonaws.com"],
    }
    token = sign_jwt(key, der_kid(key.public_key()), claims)
    assert verify_jwt(token, jwks) == claims
    other = keys["p256"] if name != "p256" else keys["p384"]
    with pytest.raises(AssertionError, match="not in the JWKS"):
        verify_jwt(sign_jwt(other, der_kid(other.public_key()), claims), jwks)


def test_oidc_jwks_path_moves_the_file_and_the_uri(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    out_dir = tmp_path / "out"
    status, out, _ = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={key}",
        f"--dir={out_dir}",
        "--jwks-path",
        "keys.json",
    )
    assert status == 0
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    assert discovery["jwks_uri"] == f"{ISSUER}/keys.json"
    assert json.loads((out_dir / "keys.json").read_text())["keys"][0]["alg"] == "ES256"
    assert not (out_dir / "openid").exists()
    assert "s3://irsa-demo/cluster1/keys.json" in out


def test_oidc_from_jwks_file_re_emits_the_api_servers_keys(tmp_path):
    out_dir = tmp_path / "out"
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={DATA / 'k8s-jwks.json'}",
        f"--dir={out_dir}",
    )
    assert (status, err) == (0, "")
    written = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert compact(written) == (DATA / "k8s-jwks.json").read_text()


def test_oidc_from_jwks_and_keys_merge(tmp_path):
    out_dir = tmp_path / "out"
    status, _, _ = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={DATA / 'k8s-rsa-private.pem'}",
        f"--from-jwks={DATA / 'k8s-jwks.json'}",
        f"--dir={out_dir}",
    )
    assert status == 0
    assert len(json.loads((out_dir / "openid/v1/jwks").read_text())["keys"]) == 2


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def test_oidc_from_jwks_https_url_is_fetched_with_a_timeout(tmp_path, monkeypatch):
    calls: list[tuple[str, float]] = []

    def fake_urlopen(url: str, timeout: float, **kwargs: object) -> _Response:
        calls.append((url, timeout))
        return _Response((DATA / "k8s-jwks.json").read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        "--from-jwks=https://api.example.com:6443/openid/v1/jwks",
        f"--dir={tmp_path}",
    )
    assert (status, err) == (0, "")
    assert calls == [("https://api.example.com:6443/openid/v1/jwks", oidc.FETCH_TIMEOUT)]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (urllib.error.HTTPError("u", 403, "Forbidden", None, None), "HTTP 403"),  # type: ignore[arg-type]
        (urllib.error.URLError("connection refused"), "connection refused"),
        (TimeoutError("timed out"), "timed out"),
    ],
)
def test_oidc_from_jwks_url_failures_are_one_line(tmp_path, monkeypatch, error, message):
    def fake_urlopen(url: str, timeout: float, **kwargs: object) -> _Response:
        raise error

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    status, _, err = run(
        oidc_command, f"--issuer={ISSUER}", "--from-jwks=https://h/jwks", f"--dir={tmp_path}"
    )
    assert status == 1
    assert message in one_line(err)


class _JwksHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (DATA / "k8s-jwks.json").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def private_ca_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL of the JWKS on a loopback HTTPS server, PEM of the private CA that signed it)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{server.server_address[1]}/openid/v1/jwks", ca_file
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_oidc_from_jwks_of_a_private_ca_server_needs_ca(tmp_path, private_ca_server):
    url, ca_file = private_ca_server
    argv = (f"--issuer={ISSUER}", f"--from-jwks={url}", f"--dir={tmp_path / 'out'}")
    status, out, err = run(oidc_command, *argv)
    assert (status, out) == (1, "")
    message = one_line(err)
    assert "certificate is not trusted by this system" in message
    assert "give that CA with --ca FILE" in message
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()

    status, out, err = run(oidc_command, *argv, f"--ca={ca_file}")
    assert (status, err) == (0, "")
    written = json.loads((tmp_path / "out" / "openid/v1/jwks").read_text())
    served = json.loads((DATA / "k8s-jwks.json").read_text())
    assert [k["kid"] for k in written["keys"]] == [k["kid"] for k in served["keys"]]


def test_oidc_from_jwks_with_another_ca_says_which(tmp_path, private_ca_server):
    url, _ = private_ca_server
    other = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other))
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={url}",
        f"--ca={other}",
        f"--dir={tmp_path}",
    )
    assert status == 1
    assert f"not signed by the CA in --ca {other}" in one_line(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read --ca"), ("not a certificate", "no PEM certificate")],
)
def test_oidc_unusable_ca_file_exits_1(tmp_path, content, message):
    ca_file = tmp_path / "ca.crt"
    if content is not None:
        ca_file.write_text(content)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        "--from-jwks=https://127.0.0.1:1/openid/v1/jwks",
        f"--ca={ca_file}",
        f"--dir={tmp_path}",
    )
    assert status == 1
    assert message in one_line(err)


def test_oidc_trailing_slash_issuer_works_with_a_warning(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, _, err = run(
        oidc_command, "--issuer=https://oidc.example.com/", f"--key={key}", f"--dir={tmp_path}"
    )
    assert status == 0
    assert "warning" in err
    assert "ends with '/'" in err
    discovery = json.loads((tmp_path / ".well-known/openid-configuration").read_text())
    assert discovery["issuer"] == "https://oidc.example.com/"  # exactly as the tokens carry it
    assert discovery["jwks_uri"] == "https://oidc.example.com/openid/v1/jwks"


def test_oidc_on_another_host_explains_the_thumbprint(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, out, _ = run(
        oidc_command,
        "--issuer=https://oidc.example.com/c1",
        f"--key={key}",
        f"--dir={tmp_path}",
        "--audience=sts.amazonaws.com",
        "--audience=other",
    )
    assert status == 0
    assert "s3://BUCKET/c1/.well-known/openid-configuration" in out
    assert "openssl s_client -connect oidc.example.com:443 -servername oidc.example.com" in out
    assert "--thumbprint-list" in out
    assert "--client-id-list sts.amazonaws.com other" in out


def test_oidc_bucket_flag_names_the_bucket(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, out, err = run(
        oidc_command,
        "--issuer=https://d111.cloudfront.net",
        f"--key={key}",
        f"--dir={tmp_path}",
        "--bucket=my-bucket",
    )
    assert (status, err) == (0, "")
    assert "s3://my-bucket/.well-known/openid-configuration" in out


def test_oidc_help(tmp_path):
    status, out, _ = run(oidc_command, "-h")
    assert status == 0
    assert "--print-apiserver-flags" in out
    assert "--jwks-path" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--issuer=http://oidc.example.com", "--key=k"], "https:// URL"),
        (["--issuer=https://h?x", "--key=k"], "query"),
        (["--key=k"], "--issuer URL is required"),
        (["--issuer=https://h"], "--key FILE"),
        (["--issuer=https://h", "--key=k", "--dir="], "--dir must not be empty"),
        (["--issuer=https://h", "--key=k", "--audience="], "--audience must not be empty"),
        (["--issuer=https://h", "--key=k", "--jwks-path=/abs"], "relative path"),
        (["--issuer=https://h", "--key=k", "--jwks-path=a/../b"], ". or .."),
        (
            ["--issuer=https://h", "--key=k", "--jwks-path=.well-known/openid-configuration"],
            "differ",
        ),
        (["--issuer=https://h", "--nope"], "unknown flag: --nope"),
        (["--issuer"], "flag needs an argument"),
        (["--issuer=https://h", "--key=k", "extra"], "unexpected argument 'extra'"),
        (["--print-apiserver-flags", "--from-jwks=j"], "not used with"),
        (["--issuer=https://h", "--key=k", "--ca=ca.crt"], "--ca is only used with --from-jwks"),
        (["--issuer=https://h", "--from-jwks=j.json", "--ca=c"], "--ca is only used with"),
    ],
)
def test_oidc_command_line_errors_exit_2(argv, message):
    status, out, err = run(oidc_command, *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)
    assert err.startswith("pod-identity-webhook oidc: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"garbage", "not a PEM file"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid public key"),
    ],
)
def test_oidc_bad_key_file_exits_1(tmp_path, content, message):
    path = tmp_path / "sa.pub"
    if content is not None:
        path.write_bytes(content)
    status, out, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 1
    assert out == ""
    assert message in one_line(err)
    assert not (tmp_path / ".well-known").exists()


def test_oidc_weak_key_exits_1(tmp_path):
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - must be refused
    path = write(tmp_path, "weak.pub", public_pem(weak))
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 1
    assert "too weak" in one_line(err)


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("bad.json", "{", "not JSON"),
        ("priv.json", '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AA"}]}', "private key"),
        ("http://api:6443/openid/v1/jwks", None, "only https:// URLs"),
    ],
)
def test_oidc_bad_jwks_exits_1(tmp_path, source, content, message):
    path = tmp_path / source if "://" not in source else None
    if path is not None and content is not None:
        path.write_text(content)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={path if path is not None else source}",
        f"--dir={tmp_path / 'out'}",
    )
    assert status == 1
    assert message in one_line(err)


def test_oidc_unwritable_directory_exits_1(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={key}", f"--dir={blocker}")
    assert status == 1
    assert "cannot write" in one_line(err)


# --- --print-apiserver-flags ---------------------------------------------------------------------


def test_print_apiserver_flags_has_the_four_flags_and_the_notes():
    status, out, err = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    for line in (
        f"--service-account-issuer={ISSUER}",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        f"--api-audiences={ISSUER}",
        f"--service-account-jwks-uri={ISSUER}/openid/v1/jwks",
    ):
        assert line in lines
    for word in ("kubeadm", "k3s", "kOps", "sts.amazonaws.com"):
        assert word in out


def test_print_apiserver_flags_lists_every_key_file_and_the_jwks_path():
    status, out, _ = run(
        oidc_command,
        "--print-apiserver-flags",
        "--issuer=https://oidc.example.com",
        "--key=/keys/old.pub",
        "--key=/keys/new.pub",
        "--signing-key=/keys/new.key",
        "--jwks-path=keys.json",
    )
    assert status == 0
    lines = out.splitlines()
    assert "--service-account-key-file=/keys/old.pub" in lines
    assert "--service-account-key-file=/keys/new.pub" in lines
    assert "--service-account-signing-key-file=/keys/new.key" in lines
    assert "--service-account-jwks-uri=https://oidc.example.com/keys.json" in lines


def test_print_apiserver_flags_two_issuer_form_for_a_running_cluster():
    old = "https://kubernetes.default.svc.cluster.local"
    status, out, err = run(
        oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}", f"--previous-issuer={old}"
    )
    assert (status, err) == (0, "")
    flags = [line for line in out.splitlines() if line.startswith("--")]
    # The new issuer first: kube-apiserver signs with the first and accepts every one given.
    assert [f for f in flags if f.startswith("--service-account-issuer=")] == [
        f"--service-account-issuer={ISSUER}",
        f"--service-account-issuer={old}",
    ]
    # Tokens requested without an audience were issued for the old issuer: still accepted.
    assert f"--api-audiences={ISSUER},{old}" in flags
    assert f"--service-account-jwks-uri={ISSUER}/openid/v1/jwks" in flags
    assert "remove the previous issuers from both flags" in out


def test_print_apiserver_flags_keeps_the_single_issuer_form_by_default():
    status, out, _ = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}")
    assert status == 0
    assert [line for line in out.splitlines() if line.startswith("--service-account-issuer=")] == [
        f"--service-account-issuer={ISSUER}"
    ]
    assert "Two issuers" not in out
    assert "--previous-issuer OLD prints" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([f"--previous-issuer={ISSUER}"], "--previous-issuer must differ from --issuer"),
        (["--previous-issuer="], "--previous-issuer"),
        (["--previous-issuer=http://[::1]:namedport"], "not a valid URL"),
        (["--previous-issuer=a b"], "white space"),
    ],
)
def test_print_apiserver_flags_refuses_previous_issuers_kube_apiserver_refuses(argv, message):
    status, out, err = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}", *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)


def test_previous_issuers_kube_apiserver_accepts():
    for issuer in ("k3s", "https://kubernetes.default.svc.cluster.local", "https://10.0.0.1:6443"):
        assert irsa_oidc.check_previous_issuer(issuer) == issuer


def test_previous_issuer_is_only_for_the_api_server_flags(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    argv = (f"--issuer={ISSUER}", f"--key={key}", f"--dir={tmp_path}", "--previous-issuer=k3s")
    status, _, err = run(oidc_command, *argv)
    assert status == 2
    assert "only used with --print-apiserver-flags" in err


def test_print_apiserver_flags_without_issuer_uses_a_placeholder():
    status, out, _ = run(oidc_command, "--print-apiserver-flags")
    assert status == 0
    assert "--service-account-issuer=https://ISSUER" in out.splitlines()


# --- trust policy ------------------------------------------------------------------------------------

PROVIDER = OidcProvider("aws", ACCOUNT, HOST_PATH)


def test_trust_policy_for_one_service_account():
    assert trust_policy(PROVIDER, [("default", "app")]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER_ARN},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{HOST_PATH}:aud": "sts.amazonaws.com",
                        f"{HOST_PATH}:sub": "system:serviceaccount:default:app",
                    }
                },
            }
        ],
    }


def test_trust_policy_lists_several_subjects_once_each():
    condition = trust_policy(
        PROVIDER, [("a", "x"), ("b", "y"), ("a", "x")], audience="aud.example"
    )["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {
            f"{HOST_PATH}:aud": "aud.example",
            f"{HOST_PATH}:sub": ["system:serviceaccount:a:x", "system:serviceaccount:b:y"],
        }
    }


@pytest.mark.parametrize(
    ("pairs", "subjects"),
    [
        ([("team-a", "*")], "system:serviceaccount:team-a:*"),
        ([("*", "app")], "system:serviceaccount:*:app"),
        (
            [("prod", "app"), ("ci-*", "runner")],
            ["system:serviceaccount:prod:app", "system:serviceaccount:ci-*:runner"],
        ),
    ],
)
def test_patterns_use_string_like_for_every_subject(pairs, subjects):
    # Conditions under two operators must both hold, so exact names join the patterns there.
    condition = trust_policy(PROVIDER, pairs)["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {f"{HOST_PATH}:aud": "sts.amazonaws.com"},
        "StringLike": {f"{HOST_PATH}:sub": subjects},
    }


@pytest.mark.parametrize(
    ("text", "account", "partition"),
    [
        (PROVIDER_ARN, None, None),
        (PROVIDER_ARN, ACCOUNT, "aws"),
        (ISSUER, ACCOUNT, None),
        (HOST_PATH, ACCOUNT, "aws"),
    ],
)
def test_provider_as_arn_url_or_host(text, account, partition):
    assert parse_provider(text, account, partition) == PROVIDER
    assert parse_provider(text, account, partition).arn == PROVIDER_ARN


def test_provider_arn_in_another_partition():
    provider = parse_provider(
        "arn:aws-cn:iam::123456789012:oidc-provider/oidc.example.cn", None, None
    )
    assert provider == OidcProvider("aws-cn", "123456789012", "oidc.example.cn")


@pytest.mark.parametrize(
    ("text", "account", "partition", "message"),
    [
        (HOST_PATH, None, None, "--account-id is required"),
        ("http://oidc.example.com", ACCOUNT, None, "always https"),
        (PROVIDER_ARN, "999999999999", None, "differs from the provider ARN's account"),
        (PROVIDER_ARN, None, "aws-cn", "differs from the provider ARN's partition"),
        ("arn:aws:iam::12:oidc-provider/h", None, None, "12-digit"),
        ("arn:nope:iam::111122223333:oidc-provider/h", None, None, "partition"),
        ("https://h?x=1", ACCOUNT, None, "not an issuer"),
        ("", ACCOUNT, None, "not an issuer"),
    ],
)
def test_bad_provider_is_a_config_error(text, account, partition, message):
    with pytest.raises(ConfigError, match=message):
        parse_provider(text, account, partition)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default:app", ("default", "app")),
        ("kube-system:aws-node", ("kube-system", "aws-node")),
        ("ns:name.with.dots", ("ns", "name.with.dots")),
        ("ns:*", ("ns", "*")),
        ("*:sa", ("*", "sa")),
        ("team-*:ci-?", ("team-*", "ci-?")),
    ],
)
def test_service_account_pairs(text, expected):
    assert parse_service_account(text) == expected


@pytest.mark.parametrize("text", ["app", ":app", "ns:", "NS:app", "ns:App", "a:b:c", "ns:a b"])
def test_bad_service_account_pairs(text):
    with pytest.raises(ValueError):
        parse_service_account(text)


def test_service_account_manifest():
    assert service_account_manifest("default", "app", ROLE_ARN) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "app",
            "namespace": "default",
            "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
        },
    }


def test_service_account_manifest_with_prefix_and_audience():
    manifest = service_account_manifest(
        "ns", "app", ROLE_ARN, annotation_prefix="irsa.example.com", audience="custom"
    )
    assert manifest["metadata"]["annotations"] == {
        "irsa.example.com/role-arn": ROLE_ARN,
        "irsa.example.com/audience": "custom",
    }


# --- the trust-policy command ------------------------------------------------------------------------


def test_trust_policy_command_prints_policy_then_service_accounts():
    status, out, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        "--service-account=batch:worker",
        f"--role-arn={ROLE_ARN}",
    )
    assert (status, err) == (0, "")
    documents = list(yaml.safe_load_all(out))
    assert documents[0] == trust_policy(PROVIDER, [("default", "app"), ("batch", "worker")])
    assert out.startswith("{\n")
    json.loads(out.split("---\n")[0])  # the first document is plain JSON for aws iam
    assert [d["metadata"]["name"] for d in documents[1:]] == ["app", "worker"]
    for document in documents[1:]:
        assert document["kind"] == "ServiceAccount"
        assert document["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}


def test_trust_policy_command_policy_only_from_host_and_account():
    status, out, _ = run(
        trust_policy_command,
        "--provider",
        HOST_PATH,
        "--account-id",
        ACCOUNT,
        "--service-account",
        "default:app",
        "-o",
        "policy",
    )
    assert status == 0
    assert json.loads(out) == trust_policy(PROVIDER, [("default", "app")])


def test_trust_policy_command_service_account_only_with_custom_audience_and_prefix():
    status, out, _ = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        f"--role-arn={ROLE_ARN}",
        "--audience=beta-sts.amazonaws.com",
        "--annotation-prefix=irsa.example.com",
        "-oservice-account",
    )
    assert status == 0
    (manifest,) = yaml.safe_load_all(out)
    assert manifest["metadata"]["annotations"] == {
        "irsa.example.com/role-arn": ROLE_ARN,
        "irsa.example.com/audience": "beta-sts.amazonaws.com",
    }


def test_trust_policy_command_without_role_arn_uses_a_placeholder():
    status, out, _ = run(
        trust_policy_command, f"--provider={PROVIDER_ARN}", "--service-account=default:app"
    )
    assert status == 0
    manifest = list(yaml.safe_load_all(out))[1]
    assert manifest["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        f"arn:aws:iam::{ACCOUNT}:role/ROLE_NAME"
    )
    assert "# Replace ROLE_NAME" in out


def test_trust_policy_command_wildcards_give_no_manifest_and_a_warning():
    status, out, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=team-a:*",
        "--service-account=*:*",
    )
    assert status == 0
    (policy,) = yaml.safe_load_all(out)
    assert "StringLike" in policy["Statement"][0]["Condition"]
    assert "every ServiceAccount" in err
    assert "no ServiceAccount manifest" in err


def test_trust_policy_command_warns_when_role_and_provider_accounts_differ():
    status, _, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        "--role-arn=arn:aws:iam::999999999999:role/x",
    )
    assert status == 0
    assert "different accounts" in err


def test_trust_policy_help():
    status, out, _ = run(trust_policy_command, "--help")
    assert status == 0
    assert "StringLike" in out
    assert "--service-account" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--service-account=default:app"], "--provider is required"),
        ([f"--provider={PROVIDER_ARN}"], "--service-account NAMESPACE:NAME is required"),
        ([f"--provider={HOST_PATH}", "--service-account=a:b"], "--account-id is required"),
        (["--provider=http://h", "--account-id=111122223333", "--service-account=a:b"], "https"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=bad"], "namespace:serviceaccount"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--account-id=1"], "12-digit"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--partition=x"], "partition"),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--partition=aws-cn"],
            "differs from the provider ARN's partition",
        ),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--role-arn=x"], "role ARN"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "-o", "yaml"], "must be policy"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--audience="], "audience"),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--annotation-prefix=A/B"],
            "DNS subdomain",
        ),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:*", "-o", "service-account"],
            "exact namespace:name",
        ),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--bogus"], "unknown flag"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "extra"], "unexpected argument"),
    ],
)
def test_trust_policy_command_line_errors_exit_2(argv, message):
    status, out, err = run(trust_policy_command, *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)
    assert err.startswith("pod-identity-webhook trust-policy: ")
