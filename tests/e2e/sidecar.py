"""A second mutating webhook, served from a thread of the test process: it adds a sidecar.

Registered under a configuration name that sorts after ours, it runs after our webhook; the
Pod it changes must then be sent to our webhook again (reinvocationPolicy: IfNeeded), so that
the sidecar gets the credentials too.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from tests.e2e.pki import KeyPair

SIDECAR = "e2e-sidecar"
SIDECAR_LABEL = "e2e.pod-identity-webhook/sidecar"


class _Handler(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the test output is no place for an access log."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        review = json.loads(self.rfile.read(length))
        request = review["request"]
        pod = request["object"]
        type(self).calls.append(pod["metadata"].get("name") or pod["metadata"].get("generateName"))
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if SIDECAR not in names:
            patch = [
                {
                    "op": "add",
                    "path": "/spec/containers/-",
                    "value": {"name": SIDECAR, "image": "registry.invalid/sidecar:1"},
                }
            ]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        body = json.dumps(
            {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SidecarInjector:
    """Serves /mutate on https://127.0.0.1:<port> until `close`."""

    def __init__(self, certificate: KeyPair) -> None:
        self.calls: list[str] = []

        class Handler(_Handler):
            pass

        Handler.calls = self.calls
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certificate.cert_path), str(certificate.key_path))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="e2e-sidecar-injector",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def configuration(self, name: str, ca_bundle: str) -> dict[str, Any]:
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "sidecar-injector.e2e.invalid",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                    "reinvocationPolicy": "Never",
                    "clientConfig": {"url": self.url, "caBundle": ca_bundle},
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                            "scope": "Namespaced",
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {SIDECAR_LABEL: "true"}},
                }
            ],
        }
