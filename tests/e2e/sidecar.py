"""A second mutating webhook, served from a thread of the test process: it adds a sidecar.

Registered under a configuration name that sorts after ours, it runs after our webhook; the
Pod it changes must then be sent to our webhook again (reinvocationPolicy: IfNeeded), so that
the sidecar gets the credentials too.
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any, ClassVar

from tests.e2e.pki import KeyPair
from tests.support.http import LoopbackServer, QuietHandler

SIDECAR = "e2e-sidecar"
SIDECAR_LABEL = "e2e.pod-identity-webhook/sidecar"


class _Handler(QuietHandler):
    calls: ClassVar[list[str]]

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
        self.send_body(body, "application/json")


class SidecarInjector:
    """Serves /mutate on https://127.0.0.1:<port> until `close`."""

    def __init__(self, certificate: KeyPair) -> None:
        self.calls: list[str] = []

        class Handler(_Handler):
            pass

        Handler.calls = self.calls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certificate.cert_path), str(certificate.key_path))
        self._server = LoopbackServer(Handler, context, name="e2e-sidecar-injector")
        self.port = self._server.port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    def close(self) -> None:
        self._server.close()

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
