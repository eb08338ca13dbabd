"""Pure. ServiceAccount signing keys as kube-apiserver publishes them: PEM keys in, JWKS out.

Key IDs follow kube-apiserver (pkg/serviceaccount): the unpadded base64url SHA-256 of the
key's DER SubjectPublicKeyInfo, so tokens the API server signs name a key we publish.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webhook.errors import ConfigError

__all__ = [
    "MIN_RSA_BITS",
    "PublicKey",
    "PublishedKey",
    "algorithm",
    "jwk_from_public_key",
    "jwks_document",
    "key_id",
    "load_pem_keys",
    "parse_jwks",
    "signing_algorithms",
    "unique_keys",
]

MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class _Curve:
    crv: str
    alg: str
    size: int  # bytes per coordinate
    curve: ec.EllipticCurve


# The three curves kube-apiserver signs with (algorithmFromPublicKey).
_CURVES = {
    "secp256r1": _Curve("P-256", "ES256", 32, ec.SECP256R1()),
    "secp384r1": _Curve("P-384", "ES384", 48, ec.SECP384R1()),
    "secp521r1": _Curve("P-521", "ES512", 66, ec.SECP521R1()),
}
_CURVES_BY_CRV = {curve.crv: curve for curve in _CURVES.values()}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


# --- keys and the JWKS -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A public key and the key ID it is published under."""

    key: PublicKey
    kid: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise ValueError("not base64url")
    body = text.rstrip("=")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _uint_bytes(value: int, size: int = 0) -> bytes:
    return value.to_bytes(max(size, (value.bit_length() + 7) // 8), "big")


def key_id(key: PublicKey) -> str:
    """kube-apiserver's `kid`: unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _b64url(hashlib.sha256(der).digest())


def _kind(key: object) -> str:
    name = type(key).__name__
    for suffix in ("PublicKey", "PrivateKey"):
        name = name.removesuffix(suffix)
    return name or "unknown"


def _checked(key: object, where: str) -> PublicKey:
    """The key if kube-apiserver can sign with it and it is strong enough; else ConfigError."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{where}: RSA key of {key.key_size} bits is too weak; "
                f"use at least {MIN_RSA_BITS} bits"
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise ConfigError(
                f"{where}: ECDSA curve {key.curve.name} is not supported; "
                "kube-apiserver signs with P-256, P-384 or P-521"
            )
        return key
    raise ConfigError(
        f"{where}: {_kind(key)} keys are not supported; "
        "kube-apiserver signs ServiceAccount tokens with RSA or ECDSA keys"
    )


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_PUBLIC_LABELS = frozenset({"PUBLIC KEY", "RSA PUBLIC KEY"})
_PRIVATE_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})


def _block_key(label: str, block: bytes, what: str) -> object | None:
    if label in _PUBLIC_LABELS:
        try:
            return serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{what} is not a valid public key") from None
    if label in _PRIVATE_LABELS:
        try:
            private = serialization.load_pem_private_key(block, password=None)
        except TypeError:
            raise ConfigError(f"{what} is encrypted; give the public key instead") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{what} is not a valid private key") from None
        # Only the public half is kept; the private object goes out of scope here.
        return private.public_key()
    if label == "ENCRYPTED PRIVATE KEY":
        raise ConfigError(f"{what} is encrypted; give the public key instead")
    if label == "CERTIFICATE":
        try:
            return x509.load_pem_x509_certificate(block).public_key()
        except ValueError:
            raise ConfigError(f"{what} is not a valid certificate") from None
    return None  # EC PARAMETERS and the like: skipped, as kube-apiserver does


def _apiserver_skips(label: str, key: object) -> bool:
    # keyutil.ParsePublicKeysPEM, which reads --service-account-key-file, tries PKIX public keys,
    # certificates, PKCS#1/PKCS#8 RSA private keys and SEC 1 EC private keys. Anything else is
    # skipped without a word, so such a key would verify nothing on the API server.
    if label == "RSA PUBLIC KEY":
        return True
    return label == "PRIVATE KEY" and isinstance(key, ec.EllipticCurvePublicKey)


def load_pem_keys(data: bytes, where: str) -> tuple[list[PublicKey], list[str]]:
    """Every RSA/ECDSA public key in a PEM file, in order, and warnings.

    Accepts PKIX and PKCS#1 public keys, PKCS#8, PKCS#1 and SEC 1 private keys (reduced to their
    public part) and certificates. Other blocks, such as the EC PARAMETERS that
    `openssl ecparam -genkey` writes, are skipped, as kube-apiserver skips them. A warning names
    each key that kube-apiserver would not read from a --service-account-key-file.
    """
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        raise ConfigError(f"{where}: not a PEM file (no -----BEGIN ...----- block)")
    keys: list[PublicKey] = []
    warnings: list[str] = []
    for number, match in enumerate(blocks, start=1):
        label = match.group(1).decode("ascii")
        what = f"{where}: PEM block {number} ({label})"
        key = _block_key(label, match.group(0), what)
        if key is None:
            continue
        keys.append(_checked(key, what))
        if _apiserver_skips(label, key):
            warnings.append(
                f"{what}: published, but kube-apiserver ignores this form in "
                "--service-account-key-file; give it the PKIX public key "
                f"(openssl pkey -in {shlex.quote(where)} -pubout"
                f"{' -pubin' if 'PUBLIC' in label else ''})"
            )
    if not keys:
        labels = ", ".join(sorted({m.group(1).decode("ascii") for m in blocks}))
        raise ConfigError(f"{where}: no public or private key in the PEM blocks ({labels})")
    return keys, warnings


def algorithm(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    return _CURVES[key.curve.name].alg


def jwk_from_public_key(key: PublicKey, kid: str | None = None) -> dict[str, str]:
    """The JWK kube-apiserver publishes for a key, members in go-jose's order."""
    kid = key_id(key) if kid is None else kid
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {
            "use": "sig",
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "n": _b64url(_uint_bytes(numbers.n)),
            "e": _b64url(_uint_bytes(numbers.e)),
        }
    curve = _CURVES[key.curve.name]
    point = key.public_numbers()
    return {
        "use": "sig",
        "kty": "EC",
        "kid": kid,
        "crv": curve.crv,
        "alg": curve.alg,
        "x": _b64url(_uint_bytes(point.x, curve.size)),
        "y": _b64url(_uint_bytes(point.y, curve.size)),
    }


def _member(jwk: Mapping[str, Any], name: str, what: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what}: member {name!r} is missing or not a string")
    return value


def _decoded(jwk: Mapping[str, Any], name: str, what: str) -> bytes:
    try:
        data = _b64url_decode(_member(jwk, name, what))
    except ValueError:
        raise ConfigError(f"{what}: member {name!r} is not base64url") from None
    if not data:
        raise ConfigError(f"{what}: member {name!r} is empty")
    return data


def _key_from_jwk(jwk: Mapping[str, Any], what: str) -> PublicKey:
    kty = jwk.get("kty")
    key: object
    if kty == "RSA":
        n = int.from_bytes(_decoded(jwk, "n", what), "big")
        e = int.from_bytes(_decoded(jwk, "e", what), "big")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise ConfigError(f"{what}: not a valid RSA public key") from None
    elif kty == "EC":
        crv = jwk.get("crv")
        curve = _CURVES_BY_CRV.get(crv) if isinstance(crv, str) else None
        if curve is None:
            raise ConfigError(f"{what}: curve {crv!r} is not supported (P-256, P-384, P-521)")
        x, y = _decoded(jwk, "x", what), _decoded(jwk, "y", what)
        if len(x) != curve.size or len(y) != curve.size:
            raise ConfigError(f"{what}: {curve.crv} coordinates must be {curve.size} bytes each")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve.curve
        )
        try:
            key = numbers.public_key()
        except ValueError:
            raise ConfigError(f"{what}: the point is not on curve {curve.crv}") from None
    else:
        raise ConfigError(f"{what}: key type {kty!r} is not supported (RSA or EC)")
    return _checked(key, what)


def parse_jwks(data: bytes | str, where: str) -> tuple[list[PublishedKey], list[str]]:
    """Validate a JWKS (as the API server serves it); returns its keys and warnings.

    Every key is rebuilt from its public values, so the set we publish is well formed.
    A key carrying private members is refused rather than copied.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ConfigError(f'{where}: not a JWKS (no "keys" list)')
    if not keys:
        raise ConfigError(f'{where}: the "keys" list is empty')
    published: list[PublishedKey] = []
    warnings: list[str] = []
    for number, jwk in enumerate(keys, start=1):
        published.append(_published_key(jwk, f"{where}: key {number}", warnings))
    return published, warnings


def _published_key(jwk: Any, what: str, warnings: list[str]) -> PublishedKey:
    if not isinstance(jwk, dict):
        raise ConfigError(f"{what}: not a JSON object")
    private = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if private:
        raise ConfigError(
            f"{what}: holds private key material ({', '.join(private)}); refusing to publish it"
        )
    key = _key_from_jwk(jwk, what)
    use = jwk.get("use", "sig")
    if use != "sig":
        raise ConfigError(f'{what}: "use" is {use!r}; a token-signing key has "sig"')
    alg = jwk.get("alg", algorithm(key))
    if alg != algorithm(key):
        raise ConfigError(f"{what}: alg {alg!r} does not fit the key ({algorithm(key)})")
    computed = key_id(key)
    kid = jwk.get("kid", computed)
    if not isinstance(kid, str) or not kid:
        raise ConfigError(f'{what}: "kid" must be a non-empty string')
    if kid != computed:
        warnings.append(
            f"{what}: kid {kid!r} is kept, but kube-apiserver would call this key "
            f"{computed!r}; tokens name the key by the kid of the server that signed them"
        )
    return PublishedKey(key, kid)


def unique_keys(keys: Iterable[PublishedKey]) -> list[PublishedKey]:
    """First occurrence of each kid; the same kid on two different keys is an error."""
    seen: dict[str, PublishedKey] = {}
    for item in keys:
        earlier = seen.get(item.kid)
        if earlier is None:
            seen[item.kid] = item
        elif earlier.key != item.key:
            raise ConfigError(f"two different keys have the same kid {item.kid!r}")
    return list(seen.values())


def jwks_document(keys: Iterable[PublishedKey]) -> dict[str, Any]:
    """`{"keys": [...]}` as kube-apiserver serves it at /openid/v1/jwks."""
    return {"keys": [jwk_from_public_key(item.key, item.kid) for item in keys]}


def signing_algorithms(keys: Iterable[PublishedKey]) -> list[str]:
    """The distinct JWS algorithms of the keys, sorted (kube-apiserver's getAlgs)."""
    return sorted({algorithm(item.key) for item in keys})
