"""The broker and the node agent as real processes (`python -m webhook broker|agent`) whose
stdout refuses every line: they keep answering, and /metrics counts what their log lost.

The broker's edges are on loopback: moto's STS server, and a stand-in in the test process for
the few Kubernetes API calls the broker makes (the association list and watch, TokenReview,
the Pod, the status write), which reviews every token as the same Pod's. tests/e2e runs the
same processes against a real API server."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import Process, child_environment, wait_until
from tests.http.helpers import metric_value
from tests.podidentity.fakes import jwt
from tests.support.http import LoopbackServer, QuietHandler
from tests.support.ports import free_port
from tests.support.reviews import role_arn
from webhook.certificates.issuing import make_ca, make_serving_cert

pytestmark = pytest.mark.timeout(90)

CLUSTER = "prod"
NAMESPACE, ACCOUNT, POD, POD_UID, NODE = "team-a", "app", "app-1", "uid-app-1", "node-a"
ASSOCIATIONS = "/apis/podidentity.pod-identity-webhook.io/v1alpha1/podidentityassociations"
ROUTE = f"/clusters/{CLUSTER}/assume-role-for-pod-identity"
# A Pod token as the agent forwards it; only the stand-in API server reads it.
TOKEN = jwt(
    {
        "aud": ["pods.eks.amazonaws.com"],
        "exp": 4_000_000_000,
        "kubernetes.io": {"pod": {"name": POD, "uid": POD_UID}},
    }
)


class _KubeApi(QuietHandler):
    """The API server's answers the broker needs, for one association and one Pod."""

    closing = threading.Event()  # ends the held watches when the test is done

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == ASSOCIATIONS and "watch=1" in url.query:
            # Nothing changes: hold the watch a while, as the API server does, then end it.
            self.closing.wait(2.0)
            self._json({})
        elif url.path == ASSOCIATIONS:
            self._json(
                {
                    "kind": "PodIdentityAssociationList",
                    "metadata": {"resourceVersion": "1"},
                    "items": [
                        {
                            "metadata": {
                                "name": ACCOUNT,
                                "namespace": NAMESPACE,
                                "uid": "association-1",
                                "generation": 1,
                                "resourceVersion": "1",
                            },
                            "spec": {"serviceAccountName": ACCOUNT, "roleArn": role_arn("app")},
                        }
                    ],
                }
            )
        elif url.path == f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}":
            self._json(
                {
                    "metadata": {"name": POD, "namespace": NAMESPACE, "uid": POD_UID},
                    "spec": {"serviceAccountName": ACCOUNT, "nodeName": NODE},
                }
            )
        else:
            self._json({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prefix = "authentication.kubernetes.io/"
        self._json(
            {
                "status": {
                    "authenticated": True,
                    "audiences": body["spec"]["audiences"],
                    "user": {
                        "username": f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}",
                        "extra": {
                            f"{prefix}pod-name": [POD],
                            f"{prefix}pod-uid": [POD_UID],
                            f"{prefix}node-name": [NODE],
                        },
                    },
                }
            }
        )

    def do_PATCH(self) -> None:  # the association's status
        self.rfile.read(int(self.headers["Content-Length"]))
        self._json({})

    def _json(self, document: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(document).encode()
        with contextlib.suppress(OSError):  # the broker may be gone already
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@dataclass(frozen=True)
class Edges:
    kube_api: str
    sts: str


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edges]:
    # moto in a process of its own: imported here, it would hook every botocore client.
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("sts") / "moto.log"
    sts = Process("moto-sts", argv, log, env=child_environment())
    try:
        wait_until(
            lambda: _request("GET", port, "/moto-api/")[0] == 200,
            timeout=30,
            what="moto's server",
            alive=lambda: None if sts.running else sts.describe(),
        )
        _KubeApi.closing.clear()
        with LoopbackServer(_KubeApi, name="kube-api") as kube:
            yield Edges(kube.origin, f"http://127.0.0.1:{port}")
            _KubeApi.closing.set()
    finally:
        sts.stop()


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    ca, ca_key = make_ca()
    cert, key = make_serving_cert(ca, ca_key, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    paths = Tls(tmp_path / "ca.crt", tmp_path / "tls.crt", tmp_path / "tls.key")
    paths.ca.write_bytes(ca)
    paths.cert.write_bytes(cert)
    paths.key.write_bytes(key)
    return paths


def _environment() -> dict[str, str]:
    # The broker's own AWS credentials for moto, and nothing of the machine's AWS setup.
    env = {k: v for k, v in child_environment().items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY="broker-secret-not-a-real-one",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    stderr: Path
    metrics_port: int

    def alive(self) -> str | None:
        return None if self.proc.poll() is None else f"exited {self.proc.returncode}"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        status, text = _request("GET", self.metrics_port, "/metrics")
        assert status == 200, text
        return metric_value(text, name, labels)

    def stop(self) -> int:
        """SIGTERM by PID; the exit status (killed after 10 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.read_text().splitlines()]


@contextlib.contextmanager
def _running(command: list[str], metrics_port: int, stdout: str, stderr: Path) -> Iterator[Server]:
    """`python -m webhook COMMAND` with stdout on the file `stdout`; stopped by PID."""
    out = os.open(stdout, os.O_WRONLY | os.O_APPEND)
    try:
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "webhook", *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=_environment(),
            )
    finally:
        os.close(out)
    server = Server(proc, stderr, metrics_port)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _request(
    method: str,
    port: int,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, str]:
    connection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _broker_command(edges: Edges, tls: Tls, port: int, metrics_port: int) -> list[str]:
    return [
        "broker",
        f"--cluster-name={CLUSTER}",
        "--cluster-arn=arn:aws:eks:us-east-1:123456789012:cluster/prod",
        f"--port={port}",
        f"--metrics-port={metrics_port}",
        f"--tls-cert={tls.cert}",
        f"--tls-key={tls.key}",
        f"--kube-api={edges.kube_api}",
        f"--sts-endpoint={edges.sts}",
        "--region=us-east-1",
        "--require-agent-token=false",
        "--status-interval=500ms",
        "--resync-period=5s",
    ]


def _wait_ready(port: int, tls: Tls, broker: Server) -> None:
    wait_until(
        lambda: _request("GET", port, "/readyz", context=tls.context())[0] == 200,
        timeout=30,
        what="the broker's /readyz",
        alive=broker.alive,
    )


def _lost_once(notices: list[dict[str, Any]], series: str) -> None:
    assert [notice["event"] for notice in notices] == ["log_lines_lost"], notices
    assert notices[0]["error"] == "OSError: No space left on device"
    assert notices[0]["detail"].endswith(f"counted in {series}")


def test_a_broker_whose_log_refuses_lines_still_issues_credentials_and_counts_them(
    edges: Edges, tls: Tls, tmp_path: Path
) -> None:
    # The broker's lines are the record of what it issued: with stdout on a full disk the
    # credentials still go out, and the loss shows in /metrics and once on stderr.
    port, metrics_port = free_port(), free_port()
    command = _broker_command(edges, tls, port, metrics_port)
    with _running(command, metrics_port, "/dev/full", tmp_path / "stderr.log") as broker:
        _wait_ready(port, tls, broker)
        for _ in range(3):
            status, text = _request(
                "POST", port, ROUTE, body={"token": TOKEN}, context=tls.context()
            )
            assert status == 200, text
            assert json.loads(text)["credentials"]["accessKeyId"]
        assert broker.metric("pod_identity_broker_requests_total", {"outcome": "success"}) == 3
        lost = broker.metric("pod_identity_broker_log_lines_lost_total")
        assert lost is not None
        assert lost >= 4  # started, and one line per answer
        assert broker.metric("pod_identity_webhook_log_lines_lost_total") is None
        assert broker.stop() == 0
    _lost_once(broker.notices(), "pod_identity_broker_log_lines_lost_total")


def test_an_agent_whose_log_refuses_lines_still_serves_credentials_and_counts_them(
    edges: Edges, tls: Tls, tmp_path: Path
) -> None:
    # The agent's broker logs as usual; the agent's own stdout is on a full disk.
    broker_log = tmp_path / "broker.log"
    broker_log.touch()
    broker_port, broker_metrics = free_port(), free_port()
    broker_command = _broker_command(edges, tls, broker_port, broker_metrics)
    token_file = tmp_path / "agent.token"
    token_file.write_text(jwt({"sub": "system:serviceaccount:kube-system:pod-identity-agent"}))
    port, health_port, metrics_port = free_port(), free_port(), free_port()
    command = [
        "agent",
        f"--broker-url=https://127.0.0.1:{broker_port}",
        f"--broker-ca={tls.ca}",
        f"--cluster-name={CLUSTER}",
        f"--token-file={token_file}",
        f"--node-name={NODE}",
        "--setup-link=false",
        f"--listen=127.0.0.1:{port}",
        "--health-address=127.0.0.1",
        f"--health-port={health_port}",
        f"--metrics-port={metrics_port}",
    ]
    with (
        _running(broker_command, broker_metrics, str(broker_log), tmp_path / "b.log") as broker,
        _running(command, metrics_port, "/dev/full", tmp_path / "agent-stderr.log") as agent,
    ):
        _wait_ready(broker_port, tls, broker)
        wait_until(
            lambda: _request("GET", health_port, "/readyz")[0] == 200,
            timeout=30,
            what="the agent's /readyz",
            alive=agent.alive,
        )
        status, text = _request("GET", port, "/v1/credentials", headers={"Authorization": TOKEN})
        assert status == 200, text
        assert json.loads(text)["AccessKeyId"]
        # A refusal is logged: the line is lost, the answer is not.
        status, text = _request("GET", port, "/v1/credentials")
        assert status == 400, text
        assert json.loads(text)["code"] == "InvalidRequestException"
        assert agent.metric("pod_identity_agent_requests_total", {"outcome": "success"}) == 1
        lost = agent.metric("pod_identity_agent_log_lines_lost_total")
        assert lost is not None
        assert lost >= 2  # started, and the refusal
        assert agent.stop() == 0
        assert broker.stop() == 0
    _lost_once(agent.notices(), "pod_identity_agent_log_lines_lost_total")
    assert '"event":"assumed"' in broker_log.read_text()
    assert not broker.notices()
