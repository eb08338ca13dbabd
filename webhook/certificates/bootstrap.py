"""Serving certificates without cert-manager, and caBundle drift detection.

With `--cert-bootstrap` the webhook keeps its own CA and serving pair in the Secret
`--tls-secret` (namespace `--namespace`): it creates them when missing, issues a new serving
certificate from the same CA when a third of its life is left, writes the pair where the TLS
reloader picks it up, and sets the MutatingWebhookConfiguration's caBundle to its CA. Replicas
share the Secret; a conflicting write means another replica won, and its pair is used.

Independently, `--webhook-configuration NAME` checks that the registered caBundle trusts the
served certificate (upstream users were bitten by a stale caBundle, which silently sends every
Pod through failurePolicy) and reports a mismatch on /readyz and as a metric.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from webhook.atomic import write_atomically
from webhook.certificates.issuing import (
    ca_bundle,
    make_ca,
    make_serving_cert,
    needs_renewal,
    service_dns_names,
    trusts,
)
from webhook.errors import ApiError
from webhook.kube import Api

__all__ = ["Bootstrap", "CaBundleCheck", "CaBundleWatch"]

log = structlog.get_logger("webhook.certificates.bootstrap")

KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key")
WEBHOOKS_API = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@dataclass(slots=True)
class CaBundleCheck:
    """Compares the registered caBundle with the served certificate."""

    api: Api
    configuration: str

    def bundles(self) -> list[bytes]:
        obj = self.api.get(f"{WEBHOOKS_API}/{self.configuration}")
        if obj is None:
            raise ApiError(404, f"MutatingWebhookConfiguration {self.configuration} not found")
        found = []
        for hook in obj.get("webhooks") or []:
            encoded = (hook.get("clientConfig") or {}).get("caBundle") or ""
            found.append(base64.b64decode(encoded) if encoded else b"")
        return found

    def trusted(self, leaf_pem: bytes) -> bool:
        bundles = self.bundles()
        return bool(bundles) and all(trusts(bundle, leaf_pem) for bundle in bundles)


class Bootstrap:
    """The Secret-held CA and serving pair, and the caBundle that must trust them."""

    def __init__(
        self,
        api: Api,
        *,
        namespace: str,
        secret: str,
        service: str,
        configuration: str,
        validity_days: int = 365,
        extra_names: tuple[str, ...] = (),
        directory: Path | None = None,
    ) -> None:
        self.api = api
        self.namespace, self.secret, self.service = namespace, secret, service
        self.configuration = configuration
        self.validity_days = validity_days
        self.extra_names = extra_names
        self._owns_directory = directory is None
        self._files = threading.Lock()
        self._closed = False
        """close() ran: a rotation still under way in its thread writes no file after it."""
        self.directory = directory or Path(tempfile.mkdtemp(prefix="pod-identity-webhook-"))
        self.cert_path = self.directory / "tls.crt"
        self.key_path = self.directory / "tls.key"
        self.ca_pem = b""

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.secret}"

    def _read(self) -> tuple[dict[str, bytes], str | None]:
        obj = self.api.get(self._path, timeout=5.0)
        if obj is None:
            return {}, None
        data = obj.get("data") or {}
        decoded = {
            k: base64.b64decode(v) for k, v in data.items() if k in KEYS and isinstance(v, str)
        }
        return decoded, str((obj.get("metadata") or {}).get("resourceVersion") or "")

    def _issue(self, current: dict[str, bytes], now: datetime) -> dict[str, bytes]:
        ca_pem, ca_key = current.get("ca.crt", b""), current.get("ca.key", b"")
        if not ca_pem or not ca_key or needs_renewal(ca_pem, now):
            ca_pem, ca_key = make_ca(f"{self.service}-ca", now=now)
        names = service_dns_names(self.service, self.namespace)
        ips = []
        for extra in self.extra_names:
            try:
                ipaddress.ip_address(extra)
            except ValueError:
                names.append(extra)
            else:
                ips.append(extra)
        cert, key = make_serving_cert(
            ca_pem, ca_key, dns_names=names, ip_addresses=ips, days=self.validity_days, now=now
        )
        return {"ca.crt": ca_pem, "ca.key": ca_key, "tls.crt": cert, "tls.key": key}

    def _write_secret(self, data: dict[str, bytes], version: str | None) -> bool:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": self.secret, "namespace": self.namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            if version is None:
                self.api.send("POST", f"/api/v1/namespaces/{self.namespace}/secrets", body)
            else:
                body["metadata"]["resourceVersion"] = version
                self.api.send("PUT", self._path, body)
        except ApiError as exc:
            if exc.status == 409:  # another replica wrote first: use its pair
                return False
            raise
        return True

    def ensure_pair(self, now: datetime | None = None) -> bool:
        """Make the Secret hold a usable pair and write it to the files; True if it changed."""
        now = now or datetime.now(UTC)
        current, version = self._read()
        usable = all(current.get(k) for k in KEYS) and not needs_renewal(current["tls.crt"], now)
        if not usable:
            fresh = self._issue(current, now)
            if self._write_secret(fresh, version):
                log.info("certificate_issued", secret=f"{self.namespace}/{self.secret}")
                current = fresh
            else:
                current, _ = self._read()
        if not all(current.get(k) for k in KEYS):
            raise ApiError(0, f"Secret {self.namespace}/{self.secret} has no usable pair")
        self.ca_pem = current["ca.crt"]
        return self._write_files(current["tls.crt"], current["tls.key"])

    def _write_files(self, cert: bytes, key: bytes) -> bool:
        with self._files:
            if self._closed or (self.cert_path.exists() and self.cert_path.read_bytes() == cert):
                return False
            # The key first: the reloader only reads the pair once the certificate changed.
            write_atomically(self.key_path, key, mode=0o600)
            write_atomically(self.cert_path, cert, mode=0o600)
            return True

    def close(self) -> None:
        """Remove the pair's files and, when this object made it, their directory: a private
        key must not outlive the process in a shared /tmp. Waits for a write under way (the
        rotation runs in a thread that cancelling its loop does not stop)."""
        with self._files:
            self._closed = True
            for path in (self.key_path, self.cert_path):
                path.unlink(missing_ok=True)
            if self._owns_directory:
                with contextlib.suppress(OSError):  # something else was put there: leave it
                    self.directory.rmdir()

    def reconcile_ca_bundle(self) -> bool:
        """Set every webhook's caBundle of the configuration to our CA; True if it patched."""
        obj = self.api.get(f"{WEBHOOKS_API}/{self.configuration}", timeout=5.0)
        if obj is None:
            raise ApiError(404, f"MutatingWebhookConfiguration {self.configuration} not found")
        wanted = ca_bundle(self.ca_pem)
        patch = [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": wanted}
            for i, hook in enumerate(obj.get("webhooks") or [])
            if (hook.get("clientConfig") or {}).get("caBundle") != wanted
        ]
        if not patch:
            return False
        self.api.send(
            "PATCH",
            f"{WEBHOOKS_API}/{self.configuration}",
            patch,
            content_type="application/json-patch+json",
        )
        log.info("ca_bundle_updated", configuration=self.configuration, webhooks=len(patch))
        return True


class CaBundleWatch:
    """Rotate the bootstrapped pair when due, keep the caBundle in step and say whether it
    trusts the served certificate; every 30 s, or every --resync-period when that is shorter."""

    def __init__(
        self,
        check: CaBundleCheck,
        *,
        served: Path,
        bootstrap: Bootstrap | None,
        on_rotated: Callable[[], object],
        on_result: Callable[[bool], None],
        interval: float,
    ) -> None:
        self.check, self.served, self.bootstrap = check, served, bootstrap
        self._on_rotated, self._on_result = on_rotated, on_result
        self.interval = max(1.0, min(30.0, interval))
        self.trusted: bool | None = None

    def once(self) -> None:
        """One round, in a thread: it calls the API server and reads files."""
        if self.bootstrap is not None:
            if self.bootstrap.ensure_pair():
                self._on_rotated()
            self.bootstrap.reconcile_ca_bundle()
        trusted = self.check.trusted(self.served.read_bytes())
        if trusted != self.trusted:
            event = "ca_bundle_trusted" if trusted else "ca_bundle_mismatch"
            (log.info if trusted else log.error)(event, configuration=self.check.configuration)
        self.trusted = trusted
        self._on_result(trusted)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.once)
            except (ApiError, OSError) as exc:
                log.warning("ca_bundle_check_failed", error=str(exc))
            await asyncio.sleep(self.interval)
