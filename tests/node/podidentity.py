"""EKS Pod Identity installed on the node as docs/self-hosted-pod-identity.md tells a user: the
broker's certificate from `pod-identity-webhook certs` in a Secret and its CA in a ConfigMap, then
an overlay of the copied manifests with the `pod-identity` component (CRD, broker Deployment,
agent DaemonSet, RBAC, the webhook watching associations) and the `pod-identity-broker-irsa`
component (the broker's own credentials by IRSA, from moto's STS like every Pod's).

What the tier adds for its own plumbing, and why:
- the broker's STS names lead to the test host (`hostAliases`) and trust moto's CA, as the
  AWS-client Pods do (tests/node/sts.py);
- the tier has no cluster DNS and no kube-proxy: the agent's `hostAliases` give the broker
  Service's name its ClusterIP (fixed in the overlay), and one DNAT rule per broker endpoint in
  the node's network namespace, in a chain of its own, does what kube-proxy would. The rules go
  away with the namespace.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.processes import wait_until
from tests.node.deployment import NAMESPACE, REPO, Deployed, is_ready
from tests.node.node import Node
from tests.node.sts import STS_NAMES, StsEndpoint

CLUSTER = "node-tier"
ACCOUNT = "111122223333"
BROKER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/node-tier-broker"
BROKER = "pod-identity-broker"
AGENT = "pod-identity-agent"
AGENT_NAMESPACE = "kube-system"
BROKER_HOST = f"{BROKER}.{NAMESPACE}.svc"
#: In the node's Service range (10.0.0.0/24), clear of the `kubernetes` Service's 10.0.0.1.
BROKER_CLUSTER_IP = "10.0.0.53"
DNAT_CHAIN = "PIW-BROKER"
OVERLAY = "node-pod-identity"
GROUP_VERSION = "podidentity.pod-identity-webhook.io/v1alpha1"
READY_TIMEOUT = 240


def _replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def _add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def _patch(kind: str, name: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(operations)}


def overlay(sts: StsEndpoint) -> dict[str, Any]:
    """The user's overlay: the components, the cluster name, the broker's role, and the
    tier's plumbing (module docstring)."""
    container = "/spec/template/spec/containers/0"
    broker = [
        _replace(f"{container}/args/1", f"--cluster-name={CLUSTER}"),
        # env/1 is the component's AWS_ROLE_ARN (its header says to set it so).
        _replace(f"{container}/env/1/value", BROKER_ROLE),
        _add(f"{container}/env/-", {"name": "AWS_REGION", "value": "us-east-1"}),
        _add(f"{container}/env/-", {"name": "AWS_CA_BUNDLE", "value": "/etc/sts-ca/ca.crt"}),
        _add(
            f"{container}/volumeMounts/-",
            {"name": "sts-ca", "mountPath": "/etc/sts-ca", "readOnly": True},
        ),
        _add("/spec/template/spec/volumes/-", {"name": "sts-ca", "configMap": {"name": "sts-ca"}}),
        _add(
            "/spec/template/spec/hostAliases",
            [{"ip": sts.address, "hostnames": list(STS_NAMES)}],
        ),
    ]
    agent = [
        _replace(f"{container}/args/1", f"--cluster-name={CLUSTER}"),
        _add(
            "/spec/template/spec/hostAliases",
            [{"ip": BROKER_CLUSTER_IP, "hostnames": [BROKER_HOST]}],
        ),
    ]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../self-signed"],
        "components": [
            "../../components/pod-identity",
            "../../components/pod-identity-broker-irsa",
        ],
        "patches": [
            _patch("Deployment", BROKER, broker),
            _patch("DaemonSet", AGENT, agent),
            _patch("Service", BROKER, [_add("/spec/clusterIP", BROKER_CLUSTER_IP)]),
        ],
    }


@dataclass
class PodIdentity:
    deployed: Deployed
    sts: StsEndpoint
    overlay: Path

    @property
    def node(self) -> Node:
        return self.deployed.node

    def render(self, overlay: Path) -> list[dict[str, Any]]:
        out = subprocess.run(
            [str(self.deployed.kustomize), "build", str(overlay)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def install(self) -> None:
        node = self.node
        certs = node.workdir / "broker-certs"
        subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "pod-identity-webhook"),
                "certs",
                "--dir",
                str(certs),
                "--service-name",
                BROKER,
                "--namespace",
                NAMESPACE,
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        node.kubectl(
            "-n", NAMESPACE, "create", "secret", "tls", "pod-identity-broker-cert",
            f"--cert={certs / 'tls.crt'}", f"--key={certs / 'tls.key'}",
        )  # fmt: skip
        node.kubectl(
            "-n", AGENT_NAMESPACE, "create", "configmap", "pod-identity-broker-ca",
            f"--from-file=ca.crt={certs / 'ca.crt'}",
        )  # fmt: skip
        sts_ca = node.workdir / "sts" / "ca.crt"
        sts_ca.write_bytes(self.sts.ca.cert)
        node.kubectl(
            "-n", NAMESPACE, "create", "configmap", "sts-ca", f"--from-file=ca.crt={sts_ca}"
        )  # fmt: skip
        self.overlay.mkdir(parents=True, exist_ok=True)
        (self.overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(overlay(self.sts)), encoding="utf-8"
        )
        self.deployed.script(
            "deploy.sh", "apply", "--overlay", str(self.overlay), "--image", self.deployed.image,
            "--wait",
        )  # fmt: skip
        self.wait_broker()
        self.route_broker()
        self.wait_agent()

    def _ready(self, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = self.node.admin.get(
            f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
        )["items"]
        return [pod for pod in pods if is_ready(pod)]

    def broker_pods(self) -> list[dict[str, Any]]:
        return self._ready(f"app={BROKER}")

    def wait_broker(self) -> None:
        """Ready means: associations listed, and its own credentials (web identity through
        moto) answered GetCallerIdentity."""
        wait_until(
            lambda: len(self.broker_pods()) == 2,
            timeout=READY_TIMEOUT,
            what="2 ready broker replicas",
        )

    def wait_agent(self) -> None:
        """Ready means: its link is up and the broker answers."""
        wait_until(
            lambda: len(self._ready(f"app={AGENT}", AGENT_NAMESPACE)) == 1,
            timeout=READY_TIMEOUT,
            what="the agent ready on the node",
        )

    def _iptables(self, *argv: str, check: bool = True) -> None:
        subprocess.run(
            [
                "ip", "netns", "exec", self.node.addresses.netns, "iptables", "-w", "5",
                "-t", "nat", *argv,
            ],
            capture_output=True,
            check=check,
            timeout=30,
        )  # fmt: skip

    def route_broker(self) -> None:
        """The broker Service's ClusterIP to its ready endpoints (kube-proxy's job)."""
        ips = sorted(pod["status"]["podIP"] for pod in self.broker_pods())
        self._iptables("-N", DNAT_CHAIN)
        for index, ip in enumerate(ips):
            # The first rule takes every 2nd new connection, the last takes the rest.
            match = (
                ["-m", "statistic", "--mode", "nth", "--every", str(len(ips) - index),
                 "--packet", "0"]
                if index < len(ips) - 1
                else []
            )  # fmt: skip
            self._iptables("-A", DNAT_CHAIN, *match, "-p", "tcp", "-j", "DNAT",
                           "--to-destination", f"{ip}:8443")  # fmt: skip
        self._iptables("-A", "OUTPUT", "-d", f"{BROKER_CLUSTER_IP}/32", "-p", "tcp",
                       "--dport", "443", "-j", DNAT_CHAIN)  # fmt: skip

    def unroute_broker(self) -> None:
        """Undone by name (absent after a failed install: nothing to undo then)."""
        self._iptables("-D", "OUTPUT", "-d", f"{BROKER_CLUSTER_IP}/32", "-p", "tcp",
                       "--dport", "443", "-j", DNAT_CHAIN, check=False)  # fmt: skip
        self._iptables("-F", DNAT_CHAIN, check=False)
        self._iptables("-X", DNAT_CHAIN, check=False)

    def uninstall(self) -> None:
        """Back to the tier's plain deployment: the objects only the Pod Identity overlay has
        are deleted, and the self-signed overlay applied again (the webhook's arguments)."""
        base = {_key(o) for o in self.render(self.deployed.overlay)}
        extra = [o for o in self.render(self.overlay) if _key(o) not in base]
        # Workloads first, then what they use; the CRD last (it takes the associations along).
        order = {"DaemonSet": 0, "Deployment": 0, "CustomResourceDefinition": 2}
        for obj in sorted(extra, key=lambda o: order.get(o["kind"], 1)):
            meta = obj["metadata"]
            argv = [
                "delete",
                obj["kind"].lower(),
                meta["name"],
                "--ignore-not-found",
                "--wait=true",
            ]
            if meta.get("namespace"):
                argv += ["-n", meta["namespace"]]
            self.node.kubectl(*argv, timeout=180)
        for name in ("pod-identity-broker-cert",):
            self.node.kubectl("-n", NAMESPACE, "delete", "secret", name, "--ignore-not-found")
        self.node.kubectl(
            "-n", AGENT_NAMESPACE, "delete", "configmap", "pod-identity-broker-ca", "--ignore-not-found"
        )  # fmt: skip
        self.node.kubectl("-n", NAMESPACE, "delete", "configmap", "sts-ca", "--ignore-not-found")
        self.unroute_broker()
        self.deployed.apply()
        self.deployed.wait_available()


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


@contextmanager
def pod_identity(deployed: Deployed, sts: StsEndpoint) -> Iterator[PodIdentity]:
    installed = PodIdentity(deployed, sts, deployed.overlay.parent / OVERLAY)
    try:
        installed.install()
        yield installed
    finally:
        installed.uninstall()


def association(namespace: str, service_account: str, role_arn: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "PodIdentityAssociation",
        "metadata": {"name": service_account, "namespace": namespace},
        "spec": {"serviceAccountName": service_account, "roleArn": role_arn},
    }
