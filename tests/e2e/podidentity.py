"""EKS Pod Identity against the real API server: the CRD and RBAC of manifests/, moto's STS
server on loopback (recording every request it receives), the broker and agents as real
`python -m webhook broker|agent` processes, and tokens from TokenRequest.

The session fixture `pod_identity` starts moto and one broker; tests spawn agents (and extra
brokers) through it, and everything is stopped by PID at the end.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import pki
from tests.e2e.cluster import REPO, Cluster, Namespace, client_context, http_get, https_get
from tests.e2e.kube import ApiError, Kube, configuration, load_manifests, write_kubeconfig
from tests.e2e.processes import Process, wait_until
from tests.support.ports import free_port
from webhook.certificates.issuing import make_serving_cert

COMPONENT = REPO / "manifests" / "components" / "pod-identity"
GROUP = "podidentity.pod-identity-webhook.io"
CLUSTER_NAME = "e2e-cluster"
REGION = "us-east-1"
BROKER_NS = "pod-identity-webhook"
BROKER_USER = f"system:serviceaccount:{BROKER_NS}:pod-identity-broker"
AGENT_NS = "kube-system"
AGENT_SA = "pod-identity-agent"
AGENT_AUDIENCE = "pod-identity-broker"
POD_AUDIENCE = "pods.eks.amazonaws.com"
NODES = ("node-a", "node-b")
ACCOUNT = "111122223333"


def role(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


@dataclass
class Broker:
    process: Process
    port: int
    metrics_port: int
    ca: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def readyz(self) -> tuple[int, str]:
        return https_get(self.port, "/readyz", client_context(self.ca))

    def metrics(self) -> str:
        status, text = http_get(self.metrics_port, "/metrics")
        assert status == 200, text
        return text


@dataclass
class Agent:
    process: Process
    port: int
    health_port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/credentials"

    def metrics(self) -> str:
        status, text = http_get(self.metrics_port, "/metrics")
        assert status == 200, text
        return text


@dataclass
class PodIdentity:
    cluster: Cluster
    workdir: Path
    moto_port: int = 0
    recording: Path = field(init=False)
    broker_kubeconfig: Path = field(init=False)
    broker_cert: pki.KeyPair = field(init=False)
    broker: Broker = field(init=False)
    processes: list[Process] = field(default_factory=list)

    @property
    def kube(self) -> Kube:
        return self.cluster.admin

    @property
    def sts_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def ca(self) -> Path:
        return self.cluster.webhook_ca.cert_path

    # -- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(exist_ok=True)
        self.kube.apply_all(load_manifests(COMPONENT / "crd.yaml"))
        self.kube.apply_all(load_manifests(COMPONENT / "rbac.yaml"))
        wait_until(self._crd_established, timeout=30, what="the PodIdentityAssociation CRD")
        for node in NODES:
            self.kube.apply_all([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}])
        identity = pki.client_cert(
            self.cluster.cluster_ca,
            self.workdir,
            "broker-client",
            user=BROKER_USER,
            groups=("system:serviceaccounts", f"system:serviceaccounts:{BROKER_NS}"),
        )
        self.broker_kubeconfig = write_kubeconfig(
            self.workdir / "broker.kubeconfig",
            server=self.cluster.server,
            ca=self.cluster.cluster_ca.cert,
            cert=identity.cert,
            key=identity.key,
            user=BROKER_USER,
        )
        self.broker_identity = Kube(
            configuration(
                self.cluster.server,
                self.cluster.cluster_ca.cert_path,
                identity.cert_path,
                identity.key_path,
            )
        )
        self.broker_cert = pki.loopback_serving_cert(
            self.cluster.webhook_ca, self.workdir, "broker"
        )
        self._moto()
        self.broker = self.spawn_broker("broker")

    def _crd_established(self) -> bool:
        crd = self.kube.get(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/podidentityassociations.{GROUP}"
        )
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Process:
        process = Process(
            name,
            argv,
            self.workdir / f"{name}.log",
            env={**self.cluster.env, **(env or {})},
            cwd=REPO,
        )
        self.processes.append(process)
        return process

    def _moto(self) -> None:
        self.moto_port = free_port()
        self.recording = self.workdir / "sts-recording.jsonl"
        self.recording.touch()
        process = self._spawn(
            "moto-sts",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
            env={"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(self.recording)},
        )
        wait_until(
            lambda: http_get(self.moto_port, "/moto-api/")[0] == 200,
            timeout=30,
            what="moto's server",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )

    def aws_env(self) -> dict[str, str]:
        """The broker's own credentials: the default chain reads them from the environment."""
        return {
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "broker-secret-not-a-real-one",
            "AWS_REGION": REGION,
        }

    def spawn_broker(self, name: str, *flags: str, cert: pki.KeyPair | None = None) -> Broker:
        port, metrics_port = free_port(), free_port()
        cert = cert or self.broker_cert
        process = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "webhook",
                "broker",
                f"--cluster-name={CLUSTER_NAME}",
                f"--port={port}",
                f"--metrics-port={metrics_port}",
                f"--tls-cert={cert.cert_path}",
                f"--tls-key={cert.key_path}",
                f"--kubeconfig={self.broker_kubeconfig}",
                f"--sts-endpoint={self.sts_url}",
                "--status-interval=500ms",
                "--resync-period=5s",
                *flags,
            ],
            env=self.aws_env(),
        )
        broker = Broker(process, port, metrics_port, self.ca)
        wait_until(
            lambda: broker.readyz()[0] == 200,
            timeout=30,
            what=f"{name} /readyz",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )
        return broker

    def restart(self, broker: Broker) -> Broker:
        """The same broker (ports and flags) stopped and started again."""
        argv = broker.process.argv
        broker.process.stop()
        process = self._spawn(f"{broker.process.name}-restarted", argv, env=self.aws_env())
        restarted = Broker(process, broker.port, broker.metrics_port, broker.ca)
        wait_until(
            lambda: restarted.readyz()[0] == 200,
            timeout=30,
            what="the restarted broker",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )
        return restarted

    def agent_token_file(self, node: str) -> Path:
        """A token of the agent ServiceAccount bound to an agent Pod on `node`."""
        name = f"agent-{node}-{secrets.token_hex(3)}"
        pod = self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": AGENT_NS},
                "spec": {
                    "serviceAccountName": AGENT_SA,
                    "automountServiceAccountToken": False,
                    "nodeName": node,
                    "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}],
                },
            }
        )
        token = self.token(AGENT_NS, AGENT_SA, pod, AGENT_AUDIENCE)
        path = self.workdir / f"{name}.token"
        path.write_text(token, encoding="utf-8")
        return path

    def spawn_agent(
        self, broker: Broker, token_file: Path, *flags: str, node: str = "node-a"
    ) -> Agent:
        port, health, metrics = free_port(), free_port(), free_port()
        process = self._spawn(
            f"agent-{port}",
            [
                sys.executable,
                "-m",
                "webhook",
                "agent",
                f"--broker-url={broker.url}",
                f"--broker-ca={self.ca}",
                f"--cluster-name={CLUSTER_NAME}",
                f"--token-file={token_file}",
                f"--node-name={node}",
                "--setup-link=false",
                f"--listen=127.0.0.1:{port}",
                "--health-address=127.0.0.1",
                f"--health-port={health}",
                f"--metrics-port={metrics}",
                *flags,
            ],
        )
        agent = Agent(process, port, health, metrics)
        wait_until(
            lambda: http_get(health, "/readyz")[0] == 200,
            timeout=30,
            what="the agent's /readyz",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )
        return agent

    # -- cluster objects --------------------------------------------------------------------

    def associate(self, ns: Namespace, service_account: str, role_arn: str, **spec: Any) -> Any:
        body = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "PodIdentityAssociation",
            "metadata": {"name": service_account, "namespace": ns.name},
            "spec": {"serviceAccountName": service_account, "roleArn": role_arn, **spec},
        }
        return self.kube.request(
            "POST", f"/apis/{GROUP}/v1alpha1/namespaces/{ns.name}/podidentityassociations", body
        ).body

    def association(self, ns: Namespace, name: str) -> Any:
        return self.kube.get(
            f"/apis/{GROUP}/v1alpha1/namespaces/{ns.name}/podidentityassociations/{name}"
        )

    def pod(
        self, ns: Namespace, name: str, service_account: str = "app", node: str = "node-a"
    ) -> Any:
        return ns.create_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "serviceAccountName": service_account,
                    "automountServiceAccountToken": False,
                    "nodeName": node,
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            }
        )

    def token(
        self,
        namespace: str,
        service_account: str,
        bound: Mapping[str, Any] | None,
        audience: str = POD_AUDIENCE,
        *,
        kind: str = "Pod",
        seconds: int = 3600,
    ) -> str:
        """TokenRequest, as the kubelet makes it for a projected volume."""
        spec: dict[str, Any] = {"audiences": [audience], "expirationSeconds": seconds}
        if bound is not None:
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": kind,
                "name": bound["metadata"]["name"],
                "uid": bound["metadata"]["uid"],
            }
        answer = self.kube.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        ).body
        token: str = answer["status"]["token"]
        return token

    def pod_token(self, ns: Namespace, pod: Mapping[str, Any], audience: str = POD_AUDIENCE) -> str:
        return self.token(ns.name, pod["spec"]["serviceAccountName"], pod, audience)

    # -- what STS received ------------------------------------------------------------------

    def sts_requests(self, action: str = "AssumeRole") -> list[dict[str, str]]:
        """Every request moto's STS received with this Action, as flat form fields."""
        found = []
        for line in self.recording.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            fields = dict(urllib.parse.parse_qsl(body))
            if fields.get("Action") == action:
                found.append(fields)
        return found

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if getattr(self, "broker_identity", None) is not None:
            self.broker_identity.close()


def tags_of(request: Mapping[str, str]) -> dict[str, str]:
    tags = {}
    index = 1
    while f"Tags.member.{index}.Key" in request:
        tags[request[f"Tags.member.{index}.Key"]] = request[f"Tags.member.{index}.Value"]
        index += 1
    return tags


def transitive_of(request: Mapping[str, str]) -> list[str]:
    keys, index = [], 1
    while f"TransitiveTagKeys.member.{index}" in request:
        keys.append(request[f"TransitiveTagKeys.member.{index}"])
        index += 1
    return keys


@pytest.fixture(scope="session")
def pod_identity(cluster: Cluster) -> Iterator[PodIdentity]:
    env = PodIdentity(cluster, cluster.workdir / "pod-identity")
    try:
        env.start()
        yield env
    finally:
        env.close()
    leftovers = [p.describe() for p in env.processes if p.running]
    assert not leftovers, f"processes survived the teardown: {leftovers}"


def serving_cert_for(cluster: Cluster, directory: Path, stem: str, ip: str) -> pki.KeyPair:
    cert, key = make_serving_cert(
        cluster.webhook_ca.cert,
        cluster.webhook_ca.key,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1", ip],
        days=2,
    )
    return pki._write(directory, stem, cert, key)


def wait(seconds: float) -> None:
    time.sleep(seconds)


__all__ = ["ApiError"]
