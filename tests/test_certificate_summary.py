"""webhook.certificates.summary reads serial, validity and SANs as `cryptography` does.

Certificates made by `cryptography` (and by the project's own issuer) are read both ways and
must agree; hand-built DER covers what builders do not make (no version field, unique
identifiers, odd times) and every way a broken input is refused with a ValueError.
"""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from webhook.certificates.issuing import make_ca, make_serving_cert, subject_alt_names
from webhook.certificates.summary import CertificateSummary, summarize

EC_KEY = ec.generate_private_key(ec.SECP256R1())


def build(
    *,
    serial: int = 1,
    not_before: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    not_after: datetime = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),
    names: list[x509.GeneralName] | None = None,
    critical: bool = False,
    other_extensions: bool = True,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = EC_KEY,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "summary-test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if other_extensions:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(key, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM)


def cryptography_reading(pem: bytes) -> CertificateSummary:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        dns, ips = [], []
    else:
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return CertificateSummary(
        cert.serial_number,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        tuple(dns),
        tuple(ips),
    )


NAMES = [
    x509.DNSName("webhook.default.svc"),
    x509.RFC822Name("ops@example.com"),  # another kind of name: skipped
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.DNSName("*.example.com"),
    x509.IPAddress(ipaddress.ip_address("fd00:ec2::23")),
]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"names": NAMES},
        {"names": NAMES, "critical": True, "other_extensions": False},
        {"names": [x509.DNSName("only.example")], "serial": 2**159 - 1},
        {"serial": 0x80},  # DER adds a leading zero byte: still positive
        # UTCTime up to 2049, GeneralizedTime from 2050 on (RFC 5280).
        {"not_before": datetime(1950, 1, 1, tzinfo=UTC)},
        {"not_after": datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)},
        {"not_after": datetime(2050, 1, 1, tzinfo=UTC)},
        {"not_after": datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
        {"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
        {"key": ed25519.Ed25519PrivateKey.generate(), "names": NAMES},
    ],
)
def test_the_summary_agrees_with_cryptography(kwargs):
    pem = build(**kwargs)
    assert summarize(pem) == cryptography_reading(pem)


def test_the_projects_own_serving_certificate_reads_the_same_and_lists_names_in_order():
    ca_cert, ca_key = make_ca()
    cert, _ = make_serving_cert(
        ca_cert, ca_key, dns_names=["a.example", "b.example"], ip_addresses=["10.0.0.1"]
    )
    summary = summarize(cert + ca_cert)  # a chain: the first certificate counts
    assert summary == cryptography_reading(cert)
    assert summary.names == subject_alt_names(cert)
    assert summary.names[:2] == ["a.example", "b.example"]
    assert summary.names[-1] == "10.0.0.1"


# --- hand-built DER ---------------------------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


ALGORITHM = seq(tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # ecdsa-with-SHA256
NAME = seq()
KEY = seq(ALGORITHM, tlv(0x03, b"\x00\x04"))
VALIDITY = seq(tlv(0x17, b"260102030405Z"), tlv(0x18, b"20270102030405Z"))


def pem_of(tbs: bytes) -> bytes:
    der = seq(tbs, ALGORITHM, tlv(0x03, b"\x00"))
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


def tbs_of(*fields: bytes, version: bool = True, serial: bytes = b"\x05") -> bytes:
    head = tlv(0xA0, tlv(0x02, b"\x02")) if version else b""
    return seq(head, tlv(0x02, serial), ALGORITHM, NAME, *fields)


def san(*names: bytes, critical: bool = False) -> bytes:
    flag = tlv(0x01, b"\xff") if critical else b""
    extension = seq(tlv(0x06, bytes.fromhex("551d11")), flag, tlv(0x04, seq(*names)))
    return tlv(0xA3, seq(extension))


def test_a_version_1_certificate_and_unique_identifiers_are_read():
    pem = pem_of(tbs_of(VALIDITY, NAME, KEY, version=False, serial=b"\xff"))
    assert summarize(pem) == CertificateSummary(
        -1,
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),
        (),
        (),
    )
    with_ids = tbs_of(
        VALIDITY, NAME, KEY, tlv(0x81, b"\x00\x01"), tlv(0x82, b"\x00\x02"), san(tlv(0x82, b"x.y"))
    )
    assert summarize(pem_of(with_ids)).names == ["x.y"]


def test_a_long_form_length_is_read():
    long_name = b"a" * 300
    pem = pem_of(tbs_of(VALIDITY, NAME, KEY, san(tlv(0x82, long_name))))
    assert summarize(pem).dns_names == (long_name.decode(),)


def bad_time(tag: int, text: bytes) -> bytes:
    return pem_of(tbs_of(seq(tlv(tag, text), tlv(0x18, b"20270102030405Z")), NAME, KEY))


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", "not a PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nno end", "not a PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----", "bad base64"),
        (pem_of(tlv(0x02, b"\x01")), "unexpected DER tag 0x02"),  # the TBS is not a SEQUENCE
        (pem_of(seq(tlv(0x02, b"\x01"))), "truncated certificate"),  # ends after the serial
        (pem_of(seq(b"\x02")), "truncated certificate"),  # a tag without a length
        (pem_of(seq(b"\x02\x85\x00\x00\x00\x00\x01")), "bad DER length"),  # five length bytes
        (pem_of(seq(b"\x02\x80")), "bad DER length"),  # indefinite length: not DER
        (pem_of(seq(b"\x02\x82\x01")), "bad DER length"),  # length bytes past the end
        (pem_of(seq(b"\x02\x05\x01")), "truncated certificate"),  # content past the end
        (bad_time(0x17, b"2601020304Z"), "bad certificate time"),  # no seconds
        (bad_time(0x18, b"2026010203040Z"), "bad certificate time"),  # short
        (bad_time(0x18, b"20260102030405+"), "bad certificate time"),  # not UTC
        (bad_time(0x18, b"2026-102030405Z"), "bad certificate time"),  # not digits
        (bad_time(0x18, b"20261302030405Z"), "bad certificate time"),  # month 13
        (bad_time(0x04, b"20260102030405Z"), "bad certificate time"),  # not a time
        (pem_of(tbs_of(VALIDITY, NAME, KEY, san(tlv(0x87, b"\x01\x02\x03")))), "IPv4"),
        (pem_of(tbs_of(VALIDITY, NAME, KEY, san(tlv(0x82, "ü".encode())))), "ascii"),
    ],
)
def test_a_broken_certificate_is_a_value_error_that_says_why(pem, message):
    with pytest.raises(ValueError, match=message):
        summarize(pem)


def test_a_critical_alt_name_extension_is_read():
    pem = pem_of(tbs_of(VALIDITY, NAME, KEY, san(tlv(0x87, b"\x0a\x00\x00\x01"), critical=True)))
    summary = summarize(pem)
    assert summary.ip_addresses == ("10.0.0.1",)
    assert summary.not_after - summary.not_before == timedelta(days=365)
