"""The other half of IRSA on a self-managed cluster: what AWS STS needs to trust the tokens.

STS accepts a projected ServiceAccount token only if it can fetch the issuer's OIDC discovery
document and key set (JWKS) over HTTPS, the issuer is registered as an IAM OIDC provider, and
the role's trust policy names the token's audience and subject. This module builds those
documents and prints the commands that publish and register them; it never calls AWS.

    oidc             discovery document + JWKS from PEM keys or the API server's JWKS
    oidc --print-apiserver-flags
                     the kube-apiserver flags that make it sign tokens for that issuer
    trust-policy     a role's trust policy and the annotated ServiceAccount manifests

The document functions are pure; `oidc_command` and `trust_policy_command` read and write files
and print. Key IDs follow kube-apiserver (pkg/serviceaccount): the unpadded base64url SHA-256
of the key's DER SubjectPublicKeyInfo, so tokens the API server signs name a key we publish.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webhook.errors import ConfigError
from webhook.goflags import FlagError, FlagSpec, parse_args, parse_go_bool, usage

__all__ = [
    "DISCOVERY_PATH",
    "OidcProvider",
    "PublishedKey",
    "apiserver_flags",
    "check_issuer",
    "discovery_document",
    "issuer_warnings",
    "jwk_from_public_key",
    "jwks_document",
    "jwks_uri_for",
    "key_id",
    "load_pem_keys",
    "oidc_command",
    "parse_jwks",
    "parse_provider",
    "parse_service_account",
    "s3_location",
    "service_account_manifest",
    "signing_algorithms",
    "subject",
    "thumbprint_command",
    "trust_policy",
    "trust_policy_command",
    "unique_keys",
]

PROG = "pod-identity-webhook"
DISCOVERY_PATH = ".well-known/openid-configuration"
DEFAULT_JWKS_PATH = "openid/v1/jwks"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_ANNOTATION_PREFIX = "eks.amazonaws.com"
MIN_RSA_BITS = 2048
FETCH_TIMEOUT = 10.0
MAX_JWKS_BYTES = 1 << 20
IAM_URL_MAX = 255  # the Url of an IAM OIDC provider is at most 255 characters

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


def _algorithm(key: PublicKey) -> str:
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
        what = f"{where}: key {number}"
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
        alg = jwk.get("alg", _algorithm(key))
        if alg != _algorithm(key):
            raise ConfigError(f"{what}: alg {alg!r} does not fit the key ({_algorithm(key)})")
        computed = key_id(key)
        kid = jwk.get("kid", computed)
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f'{what}: "kid" must be a non-empty string')
        if kid != computed:
            warnings.append(
                f"{what}: kid {kid!r} is kept, but kube-apiserver would call this key "
                f"{computed!r}; tokens name the key by the kid of the server that signed them"
            )
        published.append(PublishedKey(key, kid))
    return published, warnings


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
    return sorted({_algorithm(item.key) for item in keys})


# --- the issuer and the discovery document ---------------------------------------------------


def check_issuer(url: str) -> str:
    """The issuer if STS can use it: https, a host, no user info, query or fragment."""
    if not url.startswith("https://"):
        raise ValueError("the issuer must be an https:// URL (STS fetches it over HTTPS)")
    if any(char.isspace() for char in url):
        raise ValueError("the issuer must not contain white space")
    if "?" in url or "#" in url:
        raise ValueError("the issuer must not have a query or a fragment")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError("the issuer must not contain user information")
    if not parts.hostname:
        raise ValueError("the issuer has no host name")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("the issuer has an invalid port") from None
    return url


def issuer_warnings(issuer: str) -> list[str]:
    """Legal but risky issuer spellings."""
    warnings = []
    if issuer.endswith("/"):
        warnings.append(
            f"issuer {issuer!r} ends with '/': the tokens' iss claim, the discovery document, "
            "the IAM provider and --service-account-issuer must all use exactly this spelling; "
            "an issuer without the trailing slash is less error-prone"
        )
    if len(issuer) > IAM_URL_MAX:
        warnings.append(f"issuer is longer than {IAM_URL_MAX} characters, IAM's limit")
    host = urlsplit(issuer).hostname or ""
    s3 = _S3_VIRTUAL_HOST.fullmatch(host)
    if s3 and s3.group("bucket") and "." in s3.group("bucket"):
        warnings.append(
            f"bucket name {s3.group('bucket')!r} contains dots: S3's certificate does not "
            "cover that virtual host, so STS cannot fetch over HTTPS; use a bucket name "
            "without dots, the path-style URL, or CloudFront"
        )
    return warnings


def _issuer_base(issuer: str) -> str:
    return issuer.rstrip("/")


def jwks_uri_for(issuer: str, jwks_path: str = DEFAULT_JWKS_PATH) -> str:
    """Where the JWKS is served: under the issuer, at jwks_path."""
    return f"{_issuer_base(issuer)}/{jwks_path}"


def discovery_document(issuer: str, jwks_uri: str, algorithms: Sequence[str]) -> dict[str, Any]:
    """The /.well-known/openid-configuration document kube-apiserver serves, same members."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algorithms),
    }


_S3_VIRTUAL_HOST = re.compile(
    r"(?:(?P<bucket>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)\.)?s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?"
)


def s3_location(issuer: str) -> tuple[str | None, str]:
    """(bucket, key prefix) of an S3-hosted issuer; bucket is None for other hosts."""
    parts = urlsplit(issuer)
    path = parts.path.strip("/")
    match = _S3_VIRTUAL_HOST.fullmatch(parts.hostname or "")
    if match is None:
        return None, path
    if match.group("bucket"):
        return match.group("bucket"), path
    bucket, _, rest = path.partition("/")  # path-style: https://s3.<region>.amazonaws.com/bucket
    return (bucket or None), rest


def _check_jwks_path(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*", text):
        raise ValueError("must be a relative path such as openid/v1/jwks or keys.json")
    if any(part in (".", "..") for part in text.split("/")):
        raise ValueError("must not contain . or .. components")
    if text == DISCOVERY_PATH or text.startswith(DISCOVERY_PATH + "/"):
        raise ValueError(f"must differ from {DISCOVERY_PATH}")
    return text


# --- API server flags ----------------------------------------------------------------------------


def apiserver_flags(
    issuer: str,
    *,
    key_files: Sequence[str],
    signing_key_file: str,
    jwks_uri: str,
) -> str:
    """The kube-apiserver flags for a self-hosted issuer, with notes per distribution."""
    keys = "\n".join(f"--service-account-key-file={path}" for path in key_files)
    return f"""\
# kube-apiserver flags for IRSA; set them on every control-plane node.
--service-account-issuer={issuer}
{keys}
--service-account-signing-key-file={signing_key_file}
--api-audiences={issuer}
--service-account-jwks-uri={jwks_uri}

# --service-account-issuer  becomes the iss claim of every token; must equal the issuer in
#     the published discovery document and the IAM OIDC provider URL, character for character.
#     To move a running cluster to a new issuer, give the flag twice, the new issuer first: the
#     first signs new tokens, both are accepted, so tokens already issued keep working.
# --service-account-key-file  public (or private) keys that verify tokens, one flag per file,
#     old and new during a rotation; these are the keys to pass to `{PROG} oidc --key`.
#     The API server publishes all of them at /openid/v1/jwks.
# --service-account-signing-key-file  the private key that signs tokens; its public part must
#     be among the key files, and must be in the published JWKS before it signs anything.
# --api-audiences  the audiences the API server accepts for its own clients' tokens; the value
#     above equals the default for one issuer. While two issuers are given, list both here, or
#     leave the flag out (it then defaults to every --service-account-issuer). Do not add
#     sts.amazonaws.com: that audience is for STS, and the webhook asks for it on its own.
# --service-account-jwks-uri  optional: without it the API server's own discovery document
#     points at its internal address; with it that document matches the published one.
#
# kubeadm: the keys already exist (/etc/kubernetes/pki/sa.key and sa.pub) and are already
#     passed. Set service-account-issuer, api-audiences and service-account-jwks-uri under
#     apiServer.extraArgs in the ClusterConfiguration (an extraArgs entry replaces kubeadm's
#     default issuer https://kubernetes.default.svc.cluster.local; v1beta4's list form can
#     repeat service-account-issuer to keep it), or edit
#     /etc/kubernetes/manifests/kube-apiserver.yaml on each control-plane node (the kubelet
#     restarts the static Pod).
# k3s: pass each flag as --kube-apiserver-arg=service-account-issuer=... on the k3s server (or
#     list them under kube-apiserver-arg in /etc/rancher/k3s/config.yaml). k3s passes its own
#     key flags with keys under /var/lib/rancher/k3s/server/tls/; publish those keys (see the
#     running kube-apiserver's --service-account-key-file) rather than replacing them.
# kOps: set spec.kubeAPIServer.serviceAccountIssuer and serviceAccountJWKSURI in the cluster
#     spec; kOps can also publish the discovery documents itself
#     (spec.serviceAccountIssuerDiscovery), in which case `{PROG} oidc` is not needed."""


# --- trust policy and ServiceAccount -----------------------------------------------------------

_ACCOUNT = re.compile(r"[0-9]{12}")
_PARTITION = re.compile(r"aws(?:-[a-z]+)*")
_PROVIDER_ARN = re.compile(r"arn:(?P<partition>[^:]+):iam::(?P<account>[^:]*):oidc-provider/(.+)")
_ROLE_ARN = re.compile(r"arn:(?P<partition>aws(?:-[a-z]+)*):iam::(?P<account>[0-9]{12}):role/\S+")
_HOST_PATH = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s?#]*)?")
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_SA_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
_PATTERN = re.compile(r"[a-z0-9.*?-]+")
_PREFIX = _SA_NAME  # both are DNS subdomains


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An IAM OIDC provider: its account, partition and issuer without `https://`."""

    partition: str
    account_id: str
    issuer_path: str  # host[/path], as in the provider ARN and the condition keys

    @property
    def arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:oidc-provider/{self.issuer_path}"


def _check_account(text: str) -> str:
    if not _ACCOUNT.fullmatch(text):
        raise ValueError("must be a 12-digit AWS account ID")
    return text


def _check_partition(text: str) -> str:
    if not _PARTITION.fullmatch(text):
        raise ValueError("must be an AWS partition such as aws, aws-cn or aws-us-gov")
    return text


def parse_provider(text: str, account_id: str | None, partition: str | None) -> OidcProvider:
    """The provider from an ARN, or from an issuer URL or host[/path] plus account/partition."""
    match = _PROVIDER_ARN.fullmatch(text)
    if match:
        arn_partition, arn_account, path = match.groups()
        try:
            _check_partition(arn_partition)
            _check_account(arn_account)
        except ValueError as exc:
            raise ConfigError(f"--provider {text!r}: {exc}") from None
        if account_id is not None and account_id != arn_account:
            raise ConfigError(f"--account-id {account_id} differs from the provider ARN's account")
        if partition is not None and partition != arn_partition:
            raise ConfigError(f"--partition {partition} differs from the provider ARN's partition")
        account_id, partition = arn_account, arn_partition
    else:
        if text.startswith("http://"):
            raise ConfigError("--provider: an OIDC provider's issuer is always https://")
        path = text.removeprefix("https://")
        if account_id is None:
            raise ConfigError("--account-id is required when --provider is not an ARN")
    if not _HOST_PATH.fullmatch(path):
        raise ConfigError(f"--provider: {text!r} is not an issuer host[/path], URL or ARN")
    return OidcProvider(partition or "aws", account_id, path)


def parse_service_account(text: str) -> tuple[str, str]:
    """`namespace:name`; either side may be a StringLike pattern with `*` or `?`."""
    namespace, colon, name = text.partition(":")
    if not colon or not namespace or not name:
        raise ValueError("must be namespace:serviceaccount (either may be * for any)")
    for part, pattern, what in (
        (namespace, _NAMESPACE, "namespace"),
        (name, _SA_NAME, "ServiceAccount name"),
    ):
        wildcard = "*" in part or "?" in part
        if (wildcard and not _PATTERN.fullmatch(part)) or (
            not wildcard and not pattern.fullmatch(part)
        ):
            raise ValueError(f"{part!r} is not a valid {what}")
    return namespace, name


def _is_pattern(pair: tuple[str, str]) -> bool:
    return any("*" in part or "?" in part for part in pair)


def subject(namespace: str, name: str) -> str:
    """The `sub` claim of a ServiceAccount token."""
    return f"system:serviceaccount:{namespace}:{name}"


def _one_or_many(values: Sequence[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def trust_policy(
    provider: OidcProvider,
    service_accounts: Sequence[tuple[str, str]],
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """The role trust policy that lets these ServiceAccounts' tokens assume the role.

    Conditions under different operators must all hold, so when any pair is a pattern every
    subject goes under StringLike (a name without `*` or `?` matches only itself there).
    """
    if not service_accounts:
        raise ConfigError("at least one namespace:serviceaccount is needed")
    subjects = list(dict.fromkeys(subject(ns, sa) for ns, sa in service_accounts))
    aud_key, sub_key = f"{provider.issuer_path}:aud", f"{provider.issuer_path}:sub"
    if any(_is_pattern(pair) for pair in service_accounts):
        condition: dict[str, Any] = {
            "StringEquals": {aud_key: audience},
            "StringLike": {sub_key: _one_or_many(subjects)},
        }
    else:
        condition = {"StringEquals": {aud_key: audience, sub_key: _one_or_many(subjects)}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider.arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


def service_account_manifest(
    namespace: str,
    name: str,
    role_arn: str,
    *,
    annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX,
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """A ServiceAccount annotated for the webhook; `audience` only when it is not the default."""
    annotations = {f"{annotation_prefix}/role-arn": role_arn}
    if audience != DEFAULT_AUDIENCE:
        annotations[f"{annotation_prefix}/audience"] = audience
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
    }


# --- shared command helpers ----------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # published documents: world-readable
            handle.write(data)
        Path(temp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _read_jwks_source(source: str) -> bytes:
    if source.startswith("https://"):
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is checked to be https above
                source, timeout=FETCH_TIMEOUT
            ) as response:
                data: bytes = response.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ConfigError(
                f"cannot fetch {source}: HTTP {exc.code}; "
                "try kubectl get --raw /openid/v1/jwks > jwks.json and pass the file"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"cannot fetch {source}: {reason}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_JWKS_BYTES} bytes")
        return data
    if "://" in source:
        raise ConfigError(f"{source}: only https:// URLs are fetched; or give a file")
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None


def _warn(stderr: TextIO, command: str, message: str) -> None:
    print(f"{PROG} {command}: warning: {message}", file=stderr)


# --- the `oidc` command --------------------------------------------------------------------------


OIDC_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("issuer", check_issuer, "", "Issuer URL (https://, the tokens' iss claim)"),
    FlagSpec(
        "key",
        str,
        None,
        "PEM file with the ServiceAccount public or private key(s); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "from-jwks",
        str,
        "",
        "JWKS file or https:// URL copied from the API server's /openid/v1/jwks",
    ),
    FlagSpec("dir", str, "oidc", "Directory to write the documents into"),
    FlagSpec(
        "jwks-path",
        _check_jwks_path,
        DEFAULT_JWKS_PATH,
        "Path of the JWKS under the issuer (sets jwks_uri)",
    ),
    FlagSpec("bucket", str, "", "S3 bucket for the printed upload commands (default: from issuer)"),
    FlagSpec(
        "audience",
        str,
        None,
        f"Client ID for the IAM OIDC provider; repeatable (default {DEFAULT_AUDIENCE})",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "print-apiserver-flags",
        parse_go_bool,
        False,
        "Print the kube-apiserver flags and notes instead of writing files",
        "bool",
    ),
    FlagSpec(
        "signing-key",
        str,
        "/etc/kubernetes/pki/sa.key",
        "With --print-apiserver-flags: the signing key's path on the control plane",
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

OIDC_USAGE = f"""Usage: {PROG} oidc --issuer URL (--key FILE... | --from-jwks FILE|URL) [--dir DIR]
       [--jwks-path PATH] [--bucket NAME] [--audience AUD]...
       {PROG} oidc --print-apiserver-flags [--issuer URL] [--key PATH]...
       [--signing-key PATH] [--jwks-path PATH]

Writes the OIDC discovery document (DIR/{DISCOVERY_PATH}) and the key
set (DIR/<jwks-path>) that AWS STS fetches to verify the cluster's ServiceAccount tokens, laid
out as they must be served under the issuer URL, then prints the upload and IAM commands.
Nothing is sent to AWS.

Keys come from PEM files (public or private keys, RSA of at least {MIN_RSA_BITS} bits or ECDSA
P-256/P-384/P-521; only public values are written; give every key the API server verifies
with during a rotation) or from a JWKS copied from the API server with
`kubectl get --raw /openid/v1/jwks`. Key IDs are computed as kube-apiserver computes them.
Existing files in DIR are replaced.

Flags:
"""

_THUMBPRINT_COMMAND = (
    "openssl s_client -connect {host}:443 -servername {host} -showcerts </dev/null 2>/dev/null"
    ' | awk \'/-----BEGIN CERTIFICATE-----/{{pem=""}} {{pem=pem $0 "\\n"}}'
    ' /-----END CERTIFICATE-----/{{last=pem}} END{{printf "%s", last}}\''
    " | openssl x509 -noout -fingerprint -sha1 | cut -d= -f2 | tr -d : | tr A-F a-f"
)


def thumbprint_command(host: str) -> str:
    """A shell pipeline printing the SHA-1 thumbprint of the last certificate a host sends."""
    return _THUMBPRINT_COMMAND.format(host=shlex.quote(host))


def _publish_instructions(
    issuer: str,
    *,
    directory: Path,
    jwks_path: str,
    bucket_flag: str,
    audiences: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(stdout lines, warnings) telling how to upload and register the documents."""
    warnings: list[str] = []
    inferred, prefix = s3_location(issuer)
    if bucket_flag and inferred and bucket_flag != inferred:
        warnings.append(f"--bucket {bucket_flag} differs from the issuer's bucket {inferred}")
    bucket = bucket_flag or inferred or "BUCKET"
    base = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    lines = [
        "",
        "Upload both files (they must be publicly readable, or served through CloudFront):",
    ]
    lines.extend(
        f"  aws s3 cp {shlex.quote(str(directory / relative))} "
        f"{shlex.quote(base + relative)} --content-type application/json"
        for relative in (DISCOVERY_PATH, jwks_path)
    )
    if bucket == "BUCKET":
        lines.append("  (BUCKET: the bucket behind the issuer's host; the key prefix is its path)")
    lines += [
        "Check that STS will see them:",
        f"  curl -fsS {shlex.quote(_issuer_base(issuer) + '/' + DISCOVERY_PATH)}",
        f"  curl -fsS {shlex.quote(jwks_uri_for(issuer, jwks_path))}",
        "",
        "Register the issuer as an IAM OIDC provider (once per AWS account):",
        (
            f"  aws iam create-open-id-connect-provider --url {shlex.quote(issuer)} "
            f"--client-id-list {' '.join(shlex.quote(a) for a in audiences)}"
        ),
    ]
    host = urlsplit(issuer).hostname or ""
    if inferred is not None:
        lines += [
            "Thumbprint: for a key set served from S3, IAM validates the TLS certificate",
            "  against the certificate authorities AWS trusts and ignores any thumbprint, so",
            "  there is nothing to compute. Recent AWS CLIs let you leave --thumbprint-list out;",
            "  if yours insists on it, any 40 hexadecimal digits will do.",
        ]
    else:
        lines += [
            f"Thumbprint: {host} is not S3, so IAM may check its certificate against the",
            "  thumbprint you register: the SHA-1 fingerprint of the top intermediate CA (the",
            "  last certificate the host sends). Left out, recent IAM versions fetch it once",
            "  themselves; to choose it, compute it and add --thumbprint-list THUMBPRINT:",
            f"  {thumbprint_command(host)}",
        ]
    lines += [
        "",
        (
            f"The API server must sign with this issuer: {PROG} oidc --print-apiserver-flags "
            f"--issuer {shlex.quote(issuer)}"
        ),
        (
            f"Trust policy for a role: {PROG} trust-policy --provider {shlex.quote(issuer)} "
            "--account-id ACCOUNT --service-account NAMESPACE:SERVICEACCOUNT"
        ),
    ]
    return lines, warnings


def oidc_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `oidc` command; returns the exit status."""
    try:
        parsed = parse_args(argv, OIDC_FLAGS)
    except FlagError as exc:
        print(f"{PROG} oidc: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(OIDC_USAGE + usage(OIDC_FLAGS), file=stdout)
        return 0
    if parsed.positional:
        print(f"{PROG} oidc: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    issuer: str = values["issuer"]
    jwks_path: str = values["jwks-path"]
    key_files: list[str] = values["key"]
    audiences: list[str] = list(dict.fromkeys(values["audience"])) or [DEFAULT_AUDIENCE]

    if values["print-apiserver-flags"]:
        if values["from-jwks"]:
            print(f"{PROG} oidc: --from-jwks is not used with --print-apiserver-flags", file=stderr)
            return 2
        shown = issuer or "https://ISSUER"
        for warning in issuer_warnings(issuer) if issuer else []:
            _warn(stderr, "oidc", warning)
        text = apiserver_flags(
            shown,
            key_files=key_files or ["/etc/kubernetes/pki/sa.pub"],
            signing_key_file=values["signing-key"],
            jwks_uri=jwks_uri_for(shown, jwks_path),
        )
        print(text, file=stdout)
        return 0

    if not issuer:
        print(f"{PROG} oidc: --issuer URL is required", file=stderr)
        return 2
    if not key_files and not values["from-jwks"]:
        print(f"{PROG} oidc: give --key FILE (repeatable) or --from-jwks FILE|URL", file=stderr)
        return 2
    if not values["dir"]:
        print(f"{PROG} oidc: --dir must not be empty", file=stderr)
        return 2
    if any(not audience for audience in audiences):
        print(f"{PROG} oidc: --audience must not be empty", file=stderr)
        return 2

    directory = Path(values["dir"])
    warnings = issuer_warnings(issuer)
    try:
        collected: list[PublishedKey] = []
        for path in key_files:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
            pem_keys, pem_warnings = load_pem_keys(data, path)
            collected += [PublishedKey(key, key_id(key)) for key in pem_keys]
            warnings += pem_warnings
        if values["from-jwks"]:
            source = values["from-jwks"]
            from_jwks, jwks_warnings = parse_jwks(_read_jwks_source(source), source)
            collected += from_jwks
            warnings += jwks_warnings
        keys = unique_keys(collected)
        jwks_uri = jwks_uri_for(issuer, jwks_path)
        discovery = discovery_document(issuer, jwks_uri, signing_algorithms(keys))
        targets = (
            (directory / DISCOVERY_PATH, _json_bytes(discovery)),
            (directory / jwks_path, _json_bytes(jwks_document(keys))),
        )
        for target, content in targets:
            _write_file(target, content)
    except ConfigError as exc:
        print(f"{PROG} oidc: {exc}", file=stderr)
        return 1
    except OSError as exc:
        where = exc.filename if exc.filename is not None else directory
        print(f"{PROG} oidc: cannot write {where}: {exc.strerror or exc}", file=stderr)
        return 1

    lines, publish_warnings = _publish_instructions(
        issuer,
        directory=directory,
        jwks_path=jwks_path,
        bucket_flag=values["bucket"],
        audiences=audiences,
    )
    for warning in warnings + publish_warnings:
        _warn(stderr, "oidc", warning)
    print(f"wrote {directory / DISCOVERY_PATH}", file=stdout)
    print(f"wrote {directory / jwks_path} ({len(keys)} key(s))", file=stdout)
    for item in keys:
        print(f"  kid {item.kid} {_algorithm(item.key)}", file=stdout)
    print(f"issuer: {issuer}", file=stdout)
    print(f"jwks_uri: {jwks_uri}", file=stdout)
    print("\n".join(lines), file=stdout)
    return 0


# --- the `trust-policy` command ------------------------------------------------------------------


def _output_kind(text: str) -> str:
    if text not in ("policy", "service-account", "both"):
        raise ValueError("must be policy, service-account or both")
    return text


def _check_role_arn(text: str) -> str:
    if not _ROLE_ARN.fullmatch(text):
        raise ValueError("must be an IAM role ARN, arn:<partition>:iam::<account>:role/<name>")
    return text


def _check_prefix(text: str) -> str:
    if not _PREFIX.fullmatch(text):
        raise ValueError("must be a DNS subdomain such as eks.amazonaws.com")
    return text


def _check_audience(text: str) -> str:
    if not text or any(char.isspace() for char in text):
        raise ValueError("must be a non-empty audience without white space")
    return text


TRUST_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "provider",
        str,
        "",
        "IAM OIDC provider: its ARN, or the issuer URL or host[/path] with --account-id",
    ),
    FlagSpec("account-id", _check_account, "", "AWS account of the provider and role"),
    FlagSpec("partition", _check_partition, "aws", "AWS partition (aws, aws-cn, ...)"),
    FlagSpec(
        "service-account",
        parse_service_account,
        None,
        "namespace:serviceaccount allowed to assume the role (* wildcards); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("audience", _check_audience, DEFAULT_AUDIENCE, "Token audience (aud)"),
    FlagSpec("role-arn", _check_role_arn, "", "Role ARN for the ServiceAccount annotation"),
    FlagSpec(
        "annotation-prefix",
        _check_prefix,
        DEFAULT_ANNOTATION_PREFIX,
        "The webhook's --annotation-prefix",
    ),
    FlagSpec(
        "output",
        _output_kind,
        "both",
        "policy, service-account, or both (policy, ---, manifests)",
        shorthand="o",
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

TRUST_USAGE = f"""Usage: {PROG} trust-policy --provider ARN|ISSUER [--account-id ID] [--partition P]
       --service-account NAMESPACE:NAME... [--audience AUD] [--role-arn ARN]
       [--annotation-prefix PREFIX] [-o policy|service-account|both]

Prints the IAM trust policy that lets Pods running as these ServiceAccounts assume a role with
their projected token (sts:AssumeRoleWithWebIdentity, conditions on aud and sub), then the
ServiceAccount manifests annotated with the role for the webhook. `ns:*` allows every
ServiceAccount of a namespace, `*:name` a name in any namespace (StringLike); exact pairs use
StringEquals.

Flags:
"""


def _service_account_yaml(
    pairs: Sequence[tuple[str, str]],
    role_arn: str,
    *,
    prefix: str,
    audience: str,
    placeholder: bool,
) -> str:
    documents = []
    for namespace, name in dict.fromkeys(pairs):
        manifest = service_account_manifest(
            namespace, name, role_arn, annotation_prefix=prefix, audience=audience
        )
        text = yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)
        if placeholder:
            text = (
                "# Replace ROLE_NAME with the name of the role that has the policy above.\n" + text
            )
        documents.append(text)
    return "---\n".join(documents)


def trust_policy_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `trust-policy` command; returns the exit status."""
    try:
        parsed = parse_args(argv, TRUST_FLAGS)
    except FlagError as exc:
        print(f"{PROG} trust-policy: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(TRUST_USAGE + usage(TRUST_FLAGS), file=stdout)
        return 0
    if parsed.positional:
        print(f"{PROG} trust-policy: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    if not values["provider"]:
        print(f"{PROG} trust-policy: --provider is required (ARN or issuer)", file=stderr)
        return 2
    pairs: list[tuple[str, str]] = values["service-account"]
    if not pairs:
        print(
            f"{PROG} trust-policy: --service-account NAMESPACE:NAME is required (repeatable)",
            file=stderr,
        )
        return 2
    try:
        provider = parse_provider(
            values["provider"],
            values["account-id"] or None,
            values["partition"] if "partition" in parsed.explicit else None,
        )
    except ConfigError as exc:
        print(f"{PROG} trust-policy: {exc}", file=stderr)
        return 2
    output: str = values["output"]
    exact = [pair for pair in pairs if not _is_pattern(pair)]
    if output == "service-account" and not exact:
        print(
            f"{PROG} trust-policy: patterns match no single ServiceAccount; "
            "give an exact namespace:name for -o service-account",
            file=stderr,
        )
        return 2

    role_arn: str = values["role-arn"]
    if role_arn:
        match = _ROLE_ARN.fullmatch(role_arn)
        if match and (match["account"], match["partition"]) != (
            provider.account_id,
            provider.partition,
        ):
            _warn(
                stderr,
                "trust-policy",
                "the role and the OIDC provider are in different accounts or partitions; "
                "a role can only trust a provider of its own account",
            )
    if ("*", "*") in pairs:
        _warn(
            stderr, "trust-policy", "*:* lets every ServiceAccount of the cluster assume the role"
        )
    if provider.issuer_path.endswith("/"):
        _warn(
            stderr,
            "trust-policy",
            "the provider ends with '/'; it must match the IAM provider exactly",
        )

    parts = []
    if output in ("policy", "both"):
        parts.append(json.dumps(trust_policy(provider, pairs, values["audience"]), indent=2) + "\n")
    if output in ("service-account", "both") and exact:
        placeholder = not role_arn
        arn = role_arn or f"arn:{provider.partition}:iam::{provider.account_id}:role/ROLE_NAME"
        parts.append(
            _service_account_yaml(
                exact,
                arn,
                prefix=values["annotation-prefix"],
                audience=values["audience"],
                placeholder=placeholder,
            )
        )
    if output == "both" and len(exact) < len(pairs):
        _warn(
            stderr,
            "trust-policy",
            "no ServiceAccount manifest for the wildcard pairs; annotate those accounts yourself",
        )
    print("---\n".join(parts), end="", file=stdout)
    return 0
