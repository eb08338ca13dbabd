"""The serving TLS context and its certificate reloader.

The context is built once; a reload calls `load_cert_chain` on that same context, so new
handshakes get the new certificate while open connections keep theirs. Files are polled by
content digest rather than watched: a Kubernetes Secret volume replaces them with an atomic
`..data` symlink swap that inotify-style watchers on the file names easily miss. A new pair is
first loaded into a scratch context, so a broken or half-written pair never replaces a good one.

With `--client-ca-file` the handshake requires a client certificate signed by that CA (the API
server's, see README "Authenticating the API server"). OpenSSL can add CAs to a context but
never remove one, so a changed CA file builds a fresh context with the pair and the new CAs,
and the listening context's SNI callback, which OpenSSL runs on every ClientHello, moves each
new handshake onto the freshest one. Without the flag nothing of this runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from webhook.certificates.summary import summarize
from webhook.config import CIPHER_SUITES
from webhook.errors import ConfigError

__all__ = [
    "CertificateReloader",
    "LoadedCertificate",
    "ValidityProblem",
    "client_names",
    "server_context",
]

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


def client_names(peercert: Mapping[str, Any]) -> list[str]:
    """The names a verified client certificate goes by: its subject's common names, then its
    DNS subject alternative names (as `SSLObject.getpeercert()` reports them)."""
    names = [
        value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    names += [value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"]
    return names


def client_allowed(peercert: Mapping[str, Any] | None, allowed: Sequence[str]) -> bool:
    """Whether a verified client certificate carries one of the allowed names."""
    return peercert is not None and any(name in allowed for name in client_names(peercert))


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
        client_ca: str = "",
        factory: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        """`client_ca` (--client-ca-file) requires client certificates signed by it; `factory`
        then makes the fresh contexts a changed CA file needs (the settings of `context`)."""
        self.context = context
        self._cert_path = Path(cert_path)
        self._key_path = Path(key_path)
        self._client_ca = Path(client_ca) if client_ca else None
        self._factory = factory
        self._interval = interval
        self._on_reload = on_reload
        self.current: LoadedCertificate | None = None
        self._last_seen = ""
        self._active = context
        if self._client_ca is not None:
            if factory is None:
                raise ValueError("a client CA needs a context factory")
            context.verify_mode = ssl.CERT_REQUIRED
            context.sni_callback = self._use_active

    def _use_active(self, ssl_object: Any, _server_name: str | None, _context: Any) -> None:
        # Every ClientHello: the freshest context (pair and client CAs) takes the handshake.
        if self._active is not self.context:
            ssl_object.context = self._active

    def _digest(self) -> tuple[str, bytes]:
        cert, key = _read_pair(self._cert_path, self._key_path)
        parts = [cert, key]
        if self._client_ca is not None:
            parts.append(self._client_ca.read_bytes())
        return hashlib.sha256(b"\0".join(parts)).hexdigest(), cert

    def load(self) -> LoadedCertificate:
        """Load the pair (and the client CAs) now; raises ConfigError if they are unusable."""
        active = self._with_client_ca() if self._client_ca is not None else self.context
        try:
            digest, cert = self._digest()
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(self._cert_path, self._key_path)
            self.context.load_cert_chain(self._cert_path, self._key_path)
            parsed = summarize(cert)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cannot load --tls-cert {self._cert_path} / --tls-key {self._key_path}: {exc}"
            ) from None
        if self._client_ca is not None and self.current is None:
            # The first load: the listening context requires the same client CAs.
            self.context.load_verify_locations(self._client_ca)
        self._active = active
        self.current = LoadedCertificate(digest, parsed.serial, parsed.not_after, parsed.not_before)
        self._last_seen = digest
        return self.current

    def _with_client_ca(self) -> ssl.SSLContext:
        """A fresh context with the pair and exactly the CAs of --client-ca-file."""
        if self._factory is None or self._client_ca is None:
            raise ValueError("no client CA")
        fresh = self._factory()
        try:
            fresh.load_verify_locations(self._client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"cannot load --client-ca-file {self._client_ca}: {exc}") from None
        try:
            fresh.load_cert_chain(self._cert_path, self._key_path)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"cannot load --tls-cert {self._cert_path} / --tls-key {self._key_path}: {exc}"
            ) from None
        fresh.verify_mode = ssl.CERT_REQUIRED
        return fresh

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
