"""What the server needs to know about its serving certificate, read without `cryptography`.

The serving path only needs a certificate's serial number, validity and subject alternative
names (for metrics, log lines and the Service-name check); OpenSSL through `ssl` has already
checked that the pair loads. Reading those few DER fields here keeps the `cryptography` package
(about 10 MiB resident, 40 ms to import) out of a webhook that issues nothing: it is imported
only by the commands and the `--cert-bootstrap` path that make certificates (`issuing`).
tests/test_certificate_summary.py checks every field against `cryptography`'s reading.
"""

from __future__ import annotations

import binascii
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["CertificateSummary", "names_cover", "summarize"]

_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
_SEQUENCE, _INTEGER, _OID, _OCTETS, _BOOLEAN = 0x30, 0x02, 0x06, 0x04, 0x01
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION, _EXTENSIONS = 0xA0, 0xA3  # [0] and [3] EXPLICIT in TBSCertificate
_SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17 subjectAltName
_DNS_NAME, _IP_ADDRESS = 0x82, 0x87  # GeneralName [2] IA5String, [7] OCTET STRING


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    serial: int
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """DNS names then IP addresses, as text (what `issuing.subject_alt_names` returns)."""
        return [*self.dns_names, *self.ip_addresses]


class _Reader:
    """DER type-length-value items of one constructed value, in order."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def more(self) -> bool:
        return self.pos < self.end

    def peek(self) -> int:
        if not self.more():
            raise ValueError("truncated certificate")
        return self.data[self.pos]

    def read(self, expected: int | None = None) -> tuple[int, int, int]:
        """(tag, start, end) of the next item's content; ValueError if it is not `expected`."""
        tag = self.peek()
        if expected is not None and tag != expected:
            raise ValueError(f"unexpected DER tag 0x{tag:02x} (0x{expected:02x} expected)")
        pos = self.pos + 1
        if pos >= self.end:
            raise ValueError("truncated certificate")
        length = self.data[pos]
        pos += 1
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4 or pos + count > self.end:
                raise ValueError("bad DER length")
            length = int.from_bytes(self.data[pos : pos + count], "big")
            pos += count
        if pos + length > self.end:
            raise ValueError("truncated certificate")
        self.pos = pos + length
        return tag, pos, pos + length

    def inside(self, expected: int) -> _Reader:
        _, start, end = self.read(expected)
        return _Reader(self.data, start, end)


def _der(cert_pem: bytes) -> bytes:
    """The first certificate of a PEM text, decoded."""
    begin = cert_pem.find(_BEGIN)
    end = cert_pem.find(_END, begin + 1)
    if begin < 0 or end < 0:
        raise ValueError("not a PEM certificate")
    try:
        return binascii.a2b_base64(cert_pem[begin + len(_BEGIN) : end], strict_mode=False)
    except binascii.Error:
        raise ValueError("not a PEM certificate: bad base64") from None


def _time(tag: int, text: bytes) -> datetime:
    # RFC 5280: UTCTime YYMMDDHHMMSSZ for 1950-2049, GeneralizedTime YYYYMMDDHHMMSSZ.
    if tag == _UTC_TIME and len(text) == 13:
        text = (b"19" if text[:2] >= b"50" else b"20") + text
    if tag not in (_UTC_TIME, _GENERALIZED_TIME) or len(text) != 15:
        raise ValueError(f"bad certificate time {text!r}")
    digits = text[:14]
    if not (digits.isdigit() and text.endswith(b"Z")):
        raise ValueError(f"bad certificate time {text!r}")
    month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(4, 14, 2))
    try:
        return datetime(int(digits[:4]), month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"bad certificate time {text!r}") from None


def _alt_names(extensions: _Reader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    data = extensions.data
    dns: list[str] = []
    ips: list[str] = []
    while extensions.more():
        extension = extensions.inside(_SEQUENCE)
        _, start, end = extension.read(_OID)
        if extension.peek() == _BOOLEAN:
            extension.read(_BOOLEAN)  # critical
        _, value_start, value_end = extension.read(_OCTETS)
        if data[start:end] != _SAN_OID:
            continue
        names = _Reader(data, value_start, value_end).inside(_SEQUENCE)
        while names.more():
            tag, name_start, name_end = names.read()
            if tag == _DNS_NAME:
                dns.append(data[name_start:name_end].decode("ascii"))
            elif tag == _IP_ADDRESS:
                ips.append(str(ipaddress.ip_address(data[name_start:name_end])))
    return tuple(dns), tuple(ips)


def summarize(cert_pem: bytes) -> CertificateSummary:
    """Serial, validity and SANs of the first certificate in `cert_pem`; ValueError when it is
    not a well-formed PEM certificate."""
    der = _der(cert_pem)
    try:
        tbs = _Reader(der).inside(_SEQUENCE).inside(_SEQUENCE)
        if tbs.peek() == _VERSION:
            tbs.read(_VERSION)
        _, start, end = tbs.read(_INTEGER)
        serial = int.from_bytes(der[start:end], "big", signed=True)
        tbs.read(_SEQUENCE)  # signature algorithm
        tbs.read(_SEQUENCE)  # issuer
        validity = tbs.inside(_SEQUENCE)
        tag, start, end = validity.read()
        not_before = _time(tag, der[start:end])
        tag, start, end = validity.read()
        not_after = _time(tag, der[start:end])
        tbs.read(_SEQUENCE)  # subject
        tbs.read(_SEQUENCE)  # subject public key
        dns: tuple[str, ...] = ()
        ips: tuple[str, ...] = ()
        while tbs.more():
            if tbs.peek() == _EXTENSIONS:
                dns, ips = _alt_names(tbs.inside(_EXTENSIONS).inside(_SEQUENCE))
            else:
                tbs.read()  # issuer or subject unique identifier
    except ValueError as exc:  # UnicodeDecodeError and ipaddress's errors are ValueErrors
        raise ValueError(f"not a valid certificate: {exc}") from None
    return CertificateSummary(serial, not_before, not_after, dns, ips)


def names_cover(names: Sequence[str], host: str) -> bool:
    """Whether a certificate with these SAN DNS names is valid for `host` (RFC 6125: a
    wildcard stands for exactly one left-most label), as the API server's TLS client checks."""
    host = host.lower().rstrip(".")
    for name in names:
        pattern = name.lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == pattern[2:]:
                return True
    return False
