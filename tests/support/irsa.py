"""IRSA test material shared by the irsa, cli and e2e tiers: the reference issuer, signing keys
in every form kube-apiserver reads, and JWTs signed and verified as kube-apiserver and STS do.

Written from the RFCs (7515, 7517, 7518), independently of webhook.irsa, so that agreement
between the two means something.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from tests.support.reviews import ACCOUNT

#: Documents and keys made by kube-apiserver's own code (see the README there).
DATA = Path(__file__).resolve().parents[1] / "data" / "oidc"
ISSUER = "https://irsa-demo.s3.us-west-2.amazonaws.com/cluster1"
HOST_PATH = "irsa-demo.s3.us-west-2.amazonaws.com/cluster1"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST_PATH}"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def der_kid(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
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


def jwt_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64url_decode(token.split(".", maxsplit=1)[0]))
    return header


def verify_jwt(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a relying party such as STS does: find the key by kid, check alg and signature;
    returns the claims."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = jwt_header(token)
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


def compact(document: Any) -> str:
    """JSON as Go's encoding/json writes it (no spaces), to compare with the reference files."""
    return json.dumps(document, separators=(",", ":"))


@functools.cache
def signing_keys() -> dict[str, PrivateKey]:
    """One key of each kind kube-apiserver signs with, made once per test session (RSA 3072
    takes a while)."""
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
