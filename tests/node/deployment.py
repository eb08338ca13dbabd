"""The webhook installed on the node as a user installs it: the self-signed overlay of
manifests/ (certificates from tools/deploy/self-signed.sh), applied by tools/deploy/deploy.sh
with only the image swapped for the one built from the Dockerfile.

The overlay is applied from a copy of manifests/ in the tier's directory, because the
self-signed overlay reads its certificates from its own generated/ directory and the checkout
must stay untouched.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.processes import wait_until
from tests.node.node import Node
from tests.node.pods import injected

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "pod-identity-webhook"
DEPLOYMENT = "pod-identity-webhook"
SECRET = "pod-identity-webhook-cert"
SELECTOR = "app=pod-identity-webhook"
ROLLOUT_TIMEOUT = 240


def is_ready(pod: dict[str, Any]) -> bool:
    """Ready, and not on its way out."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@dataclass
class Deployed:
    node: Node
    image: str
    overlay: Path
    kustomize: Path

    @property
    def generated(self) -> Path:
        return self.overlay / "generated"

    def deploy_env(self) -> dict[str, str]:
        return {
            **self.node.env,
            "KUBECONFIG": str(self.node.admin_kubeconfig),
            "KUBECTL": str(self.node.binaries["kubectl"]),
            "KUSTOMIZE": str(self.kustomize),
            "POD_IDENTITY_WEBHOOK": str(REPO / ".venv" / "bin" / "pod-identity-webhook"),
        }

    def script(self, name: str, *argv: str) -> str:
        result = subprocess.run(
            [str(REPO / "tools" / "deploy" / name), *argv],
            capture_output=True,
            text=True,
            check=False,
            env=self.deploy_env(),
            timeout=ROLLOUT_TIMEOUT + 60,
        )
        assert result.returncode == 0, f"{name} {' '.join(argv)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def self_signed(self) -> None:
        """tools/deploy/self-signed.sh into the copied overlay (a renewal when run again)."""
        self.script("self-signed.sh", "--out", str(self.generated))

    def apply(self) -> None:
        self.script(
            "deploy.sh", "apply", "--overlay", str(self.overlay), "--image", self.image, "--wait"
        )

    def deployment(self) -> dict[str, Any]:
        result: dict[str, Any] = self.node.admin.get(
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}"
        )
        return result

    def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.node.admin.get(
            f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={SELECTOR}"
        )["items"]
        return items

    def ready_pods(self) -> list[dict[str, Any]]:
        return [pod for pod in self.pods() if is_ready(pod)]

    def wait_available(self, replicas: int = 2, timeout: float = ROLLOUT_TIMEOUT) -> None:
        def available() -> bool:
            status = self.deployment().get("status", {})
            return (
                status.get("updatedReplicas") == replicas
                and status.get("availableReplicas") == replicas
                and status.get("replicas") == replicas
                and len(self.ready_pods()) == replicas
            )

        wait_until(available, timeout=timeout, what=f"{replicas} available webhook replicas")

    def ca_context(self) -> ssl.SSLContext:
        """Trusts what the webhook configuration's caBundle trusts (the overlay's CA)."""
        context = ssl.create_default_context(cafile=str(self.generated / "ca.crt"))
        context.check_hostname = False
        return context

    def served_certificate(self, pod_ip: str) -> bytes:
        """The DER certificate a new TLS handshake with the Pod gets (no verification: the
        test compares it with the files)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        import socket

        with (
            socket.create_connection((pod_ip, 8443), timeout=3) as raw,
            context.wrap_socket(
                raw, server_hostname="pod-identity-webhook.pod-identity-webhook.svc"
            ) as tls,
        ):
            certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate


def deploy_webhook(node: Node, image: str, kustomize: Path) -> Deployed:
    manifests = node.workdir / "manifests"
    shutil.copytree(REPO / "manifests", manifests, ignore=shutil.ignore_patterns("generated"))
    deployed = Deployed(node, image, manifests / "overlays" / "self-signed", kustomize)
    deployed.self_signed()
    deployed.apply()
    deployed.wait_available()

    node.admin.apply_all(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "piw-probe",
                    "namespace": "default",
                    "annotations": {
                        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/probe"
                    },
                },
            }
        ]
    )
    # The configuration reaches the API server's admission chain through an informer.
    wait_until(
        lambda: "AWS_ROLE_ARN" in injected(node, "default", "piw-probe"),
        timeout=60,
        what="a dry-run Pod mutated through the Service",
    )
    return deployed
