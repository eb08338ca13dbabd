"""The serving TLS context and its certificate reloader.

The context is built once; a reload calls `load_cert_chain` on that same context, so new
handshakes get the new certificate while open connections keep theirs. Files are polled by
content digest rather than watched: a Kubernetes Secret volume replaces them with an atomic
`..data` symlink swap that inotify-style watchers on the file names easily miss. A new pair is
first loaded into a scratch context, so a broken or half-written pair never replaces a good one.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509

from webhook.config import CIPHER_SUITES
from webhook.errors import ConfigError

__all__ = ["CertificateReloader", "LoadedCertificate", "ValidityProblem", "server_context"]

ValidityProblem = Literal["expired", "not_yet_valid", "expiring_soon"]

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
# Go's default TLS 1.2 suites: ECDHE with AEAD or CBC-SHA; no RSA key exchange, 3DES or RC4.
_GO_DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


def server_context(min_version: str, cipher_suites: tuple[str, ...]) -> ssl.SSLContext:
    """A TLS server context honouring --tls-min-version and --tls-cipher-suites."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[min_version]
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # TLS 1.3 names are accepted but, as in Go, do not restrict anything.
    names = [CIPHER_SUITES[n] for n in cipher_suites if CIPHER_SUITES[n] is not None]
    ciphers = ":".join(n for n in names if n) if names else _GO_DEFAULT_CIPHERS
    if min_version in ("1.0", "1.1"):
        # Old protocols need OpenSSL's lowest security level: an explicit choice of the user.
        ciphers += ":@SECLEVEL=0"
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"invalid tls-cipher-suites: not supported by this OpenSSL ({exc})"
        ) from None
    context.options |= ssl.OP_NO_COMPRESSION
    return context


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    digest: str
    serial: int
    not_after: datetime
    not_before: datetime

    def problem(self, now: datetime, warn_within: float) -> ValidityProblem | None:
        """What a TLS client would refuse now, or what it will refuse within `warn_within`
        seconds (0: never warn ahead)."""
        if now >= self.not_after:
            return "expired"
        if now < self.not_before:
            return "not_yet_valid"
        if warn_within and now + timedelta(seconds=warn_within) >= self.not_after:
            return "expiring_soon"
        return None


def _read_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    return cert_path.read_bytes(), key_path.read_bytes()


class CertificateReloader:
    """Loads --tls-cert/--tls-key into a context and reloads them when their content changes."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert_path: str,
        key_path: str,
        *,
        interval: float = 2.0,
        on_reload: Callable[[LoadedCertificate | None, Exception | None], None] | None = None,
    ) -> None:
        self.context = context
        self._cert_path = Path(cert_path)
        self._key_path = Path(key_path)
        self._interval = interval
        self._on_reload = on_reload
        self.current: LoadedCertificate | None = None
        self._last_seen = ""

    def _digest(self) -> tuple[str, bytes]:
        cert, key = _read_pair(self._cert_path, self._key_path)
        return hashlib.sha256(cert + b"\0" + key).hexdigest(), cert

    def load(self) -> LoadedCertificate:
        """Load the pair now; raises ConfigError (start-up) if it is unusable."""
        try:
            digest, cert = self._digest()
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(self._cert_path, self._key_path)
            self.context.load_cert_chain(self._cert_path, self._key_path)
            parsed = x509.load_pem_x509_certificate(cert)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cannot load --tls-cert {self._cert_path} / --tls-key {self._key_path}: {exc}"
            ) from None
        self.current = LoadedCertificate(
            digest, parsed.serial_number, parsed.not_valid_after_utc, parsed.not_valid_before_utc
        )
        self._last_seen = digest
        return self.current

    def check(self) -> bool:
        """Reload if the files changed; True when a new pair is now served."""
        try:
            digest, _ = self._digest()
        except OSError as exc:
            # Mid-swap or removed: keep serving; report once per distinct problem.
            if self._last_seen != f"error:{exc}":
                self._last_seen = f"error:{exc}"
                self._report(None, exc)
            return False
        if digest == self._last_seen or (self.current and digest == self.current.digest):
            self._last_seen = digest
            return False
        self._last_seen = digest
        try:
            loaded = self.load()
        except ConfigError as exc:
            self._report(None, exc)
            return False
        self._report(loaded, None)
        return True

    def _report(self, loaded: LoadedCertificate | None, error: Exception | None) -> None:
        if self._on_reload is not None:
            self._on_reload(loaded, error)

    async def run(self) -> None:
        """Poll until cancelled. Two small reads every few seconds; on the loop, so the context
        is never changed from another thread while handshakes use it."""
        while True:
            await asyncio.sleep(self._interval)
            self.check()
