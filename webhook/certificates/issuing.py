"""Pure. A private CA and serving certificates for the webhook, as PEM bytes in and out.

Nothing here touches files, so the TLS layer, the bootstrap and the tests use it directly.
The API server (Go crypto/x509) matches the host name against the subjectAltName only, never
the Common Name, so the SANs are what make a certificate usable; the CN is for people.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.errors import ConfigError

__all__ = [
    "ca_bundle",
    "certificate_expiry",
    "certificate_serial",
    "make_ca",
    "make_serving_cert",
    "needs_renewal",
    "service_dns_names",
    "subject_alt_names",
    "trusts",
]

CLUSTER_DOMAIN = "cluster.local"
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_CA_DAYS = 3650
MAX_DAYS = 36500  # a century keeps notAfter far from X.509's year-9999 limit
_MAX_CN = 64  # ub-common-name in RFC 5280

_T = TypeVar("_T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IssuerKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
# Kubernetes names: a Service is a DNS-1035 label, a Namespace a DNS-1123 label.
SERVICE_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
NAMESPACE_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


# --- pure certificate functions -------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def _validity(now: datetime, days: int) -> tuple[datetime, datetime]:
    if days < 1:
        raise ConfigError(f"certificate lifetime must be at least 1 day, not {days}")
    try:
        # Backdated so a node whose clock is a little behind still accepts the certificate.
        return now - CLOCK_SKEW, now + timedelta(days=days)
    except OverflowError:
        raise ConfigError(f"certificate lifetime of {days} days is too long") from None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: _IssuerKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _hash_for(key: _IssuerKey) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign the message itself; the builder must be given no hash for them.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{what} is not a PEM certificate") from None


def _load_issuer_key(pem: bytes) -> _IssuerKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError("CA key is encrypted; an unencrypted PEM key is needed") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("CA key is not a PEM private key") from None
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ConfigError(f"CA key type {type(key).__name__} cannot sign certificates")
    return key


def dns_name(name: str) -> str:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        raise ConfigError(f"DNS name {name!r} is an IP address; give it as an IP address")
    if not name.isascii():
        raise ConfigError(f"DNS name {name!r} is not ASCII; use its punycode (xn--) form")
    if len(name) > 253 or not _DNS_NAME.fullmatch(name):
        raise ConfigError(f"invalid DNS name {name!r}")
    return name


def ip_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"invalid IP address {text!r}") from None


def _unique(items: Sequence[_T]) -> list[_T]:
    # DNS names compare case-insensitively; the first spelling given is kept.
    seen: set[object] = set()
    result: list[_T] = []
    for item in items:
        marker = item.lower() if isinstance(item, str) else item
        if marker not in seen:
            seen.add(marker)
            result.append(item)
    return result


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a webhook Service, shortest first."""
    if not SERVICE_NAME.fullmatch(service):
        raise ConfigError(f"invalid Service name {service!r} (a lower-case DNS-1035 label)")
    if not NAMESPACE_NAME.fullmatch(namespace):
        raise ConfigError(f"invalid namespace {namespace!r} (a lower-case DNS-1123 label)")
    svc = f"{service}.{namespace}.svc"
    return [service, f"{service}.{namespace}", svc, f"{svc}.{CLUSTER_DOMAIN}"]


def make_ca(
    common_name: str = "pod-identity-webhook-ca",
    *,
    days: int = DEFAULT_CA_DAYS,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed CA that may sign leaf certificates only; returns (cert_pem, key_pem)."""
    if not 1 <= len(common_name) <= _MAX_CN:
        raise ConfigError(f"CA common name must be 1 to {_MAX_CN} characters")
    not_before, not_after = _validity(_now(now), days)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    days: int = 365,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A TLS server certificate for the given names, signed by the CA; returns (cert, key)."""
    names = _unique([dns_name(name) for name in dns_names])
    ips = _unique([ip_address(text) for text in ip_addresses])
    if not names and not ips:
        raise ConfigError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = _load_cert(ca_cert_pem, "CA certificate")
    ca_key = _load_issuer_key(ca_key_pem)
    if ca_key.public_key() != ca_cert.public_key():
        raise ConfigError("CA key does not belong to the CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError("CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
    not_before, not_after = _validity(_now(now), days)

    # The CN only labels the certificate; it has a 64-character limit that SANs do not.
    fitting = [n for n in [*names, *map(str, ips)] if len(n) <= _MAX_CN]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fitting[0])] if fitting else [])
    san = x509.SubjectAlternativeName(
        [*(x509.DNSName(n) for n in names), *(x509.IPAddress(ip) for ip in ips)]
    )
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    key = _new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # RFC 5280: with an empty subject the SAN extension carries the identity and is critical.
        .add_extension(san, critical=not fitting)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                # RFC 5480 and Go's own generator: keyEncipherment is for RSA keys, not ECDSA.
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, _hash_for(ca_key))
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ca_bundle(ca_cert_pem: bytes) -> str:
    """The value of a MutatingWebhookConfiguration's `caBundle`: base64 of the PEM text."""
    _load_cert(ca_cert_pem, "CA certificate")
    return base64.b64encode(ca_cert_pem).decode("ascii")


def certificate_expiry(cert_pem: bytes) -> datetime:
    """notAfter, timezone-aware (UTC)."""
    return _load_cert(cert_pem, "certificate").not_valid_after_utc


def certificate_serial(cert_pem: bytes) -> int:
    return _load_cert(cert_pem, "certificate").serial_number


def subject_alt_names(cert_pem: bytes) -> list[str]:
    """DNS names then IP addresses from the SAN extension, as text."""
    cert = _load_cert(cert_pem, "certificate")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return [*san.get_values_for_type(x509.DNSName), *ips]


def needs_renewal(cert_pem: bytes, now: datetime) -> bool:
    """True when less than a third of the certificate's life is left (or it does not parse)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return now >= cert.not_valid_after_utc - lifetime / 3


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    # Name and signature, for every key type and padding a CA may use (RSA PKCS#1 v1.5 and
    # PSS, ECDSA, Ed25519, Ed448, DSA): what the API server's TLS client checks per link.
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trusts(bundle_pem: bytes, leaf_pem: bytes) -> bool:
    """Whether a caBundle contains the certificate or a CA that signed it."""
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem)
        anchors = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError:
        return False
    return any(anchor == leaf or _issued_by(leaf, anchor) for anchor in anchors)
