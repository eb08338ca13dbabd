"""Certificates and keys for the throw-away cluster: CAs, serving and client certificates.

The CA and serving certificates come from the webhook's own `webhook.certificates.issuing` (so the e2e tier
also proves they are acceptable to Go's crypto/x509); client certificates are made here, because
the webhook never needs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.certificates.issuing import make_ca, make_serving_cert


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM key, written to `<directory>/<stem>.crt|.key`."""

    cert: bytes
    key: bytes
    cert_path: Path
    key_path: Path


def _write(directory: Path, stem: str, cert: bytes, key: bytes) -> KeyPair:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return KeyPair(cert, key, cert_path, key_path)


def certificate_authority(directory: Path, stem: str, common_name: str) -> KeyPair:
    cert, key = make_ca(common_name, days=2)
    return _write(directory, stem, cert, key)


def loopback_serving_cert(ca: KeyPair, directory: Path, stem: str) -> KeyPair:
    """Valid for https://127.0.0.1 and https://localhost (Go checks SANs only)."""
    cert, key = make_serving_cert(
        ca.cert, ca.key, dns_names=["localhost"], ip_addresses=["127.0.0.1"], days=2
    )
    return _write(directory, stem, cert, key)


def client_cert(
    ca: KeyPair, directory: Path, stem: str, *, user: str, groups: tuple[str, ...]
) -> KeyPair:
    """A client certificate the API server maps to `user` (CN) in `groups` (O, one each)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name(
        [
            *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups),
            x509.NameAttribute(NameOID.COMMON_NAME, user),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _write(directory, stem, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def service_account_signing_key(path: Path) -> Path:
    """An RSA-2048 key: the API server signs ServiceAccount tokens with it (RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
