"""The agent as on a node: in a network namespace this test creates (and removes), it sets up
its own link with 169.254.170.23 and fd00:ec2::23, listens on port 80 there, and botocore's
container provider inside the namespace gets credentials from both addresses. The namespace
reaches the broker through a veth pair with link-local addresses.

Needs root and iproute2 (`tools/netns/install.sh`); skipped with one reason otherwise, unless
POD_IDENTITY_WEBHOOK_REQUIRE_NETNS=1 (CI), which makes it fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import pytest

from tests.e2e.cluster import Namespace
from tests.e2e.podidentity import CLUSTER_NAME, REGION, PodIdentity, role, serving_cert_for
from tests.e2e.processes import Process, wait_until
from tests.support.tiers import REQUIRE_NETNS, unavailable

pytestmark = pytest.mark.e2e

CLIENT = """
import json, sys
from botocore.credentials import ContainerProvider
url, token_file = sys.argv[1], sys.argv[2]
provider = ContainerProvider(environ={
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": url,
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": token_file,
})
credentials = provider.load().get_frozen_credentials()
print(json.dumps([credentials.access_key, credentials.secret_key, credentials.token]))
"""

RAW = """
import http.client, sys
connection = http.client.HTTPConnection(sys.argv[1], 80, timeout=5)
connection.request("GET", "/v1/credentials", headers={"Host": sys.argv[2], "Authorization": "x.y.z"})
print(connection.getresponse().status)
"""


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (tools/netns/install.sh)"
    return None


@dataclass
class NetNs:
    name: str
    host_if: str
    host_ip: str
    ns_ip: str

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[NetNs]:
    reason = _usable()
    if reason is not None:
        unavailable("netns tier", reason, require=REQUIRE_NETNS)
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"pi-agent-{tag}", f"pih{tag}", f"pin{tag}"
    third = 100 + secrets.randbelow(100)
    host_ip, ns_ip = f"169.254.{third}.1", f"169.254.{third}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for command in (
            ("addr", "add", f"{ns_ip}/30", "dev", ns_if),
            ("link", "set", ns_if, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("-n", name, *command)
        yield NetNs(name, host_if, host_ip, ns_ip)
    finally:
        # Removing the namespace removes its end of the veth, which removes ours.
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    assert name not in leftover.stdout


def test_the_agent_serves_on_its_own_link_inside_a_node_namespace(
    pod_identity: PodIdentity,
    netns: NetNs,
    make_namespace: Callable[..., Namespace],
    tmp_path: Path,
) -> None:
    ns = make_namespace(webhook=None)
    ns.service_account("app")
    pod_identity.associate(ns, "app", role("e2e-netns"))
    pod = pod_identity.pod(ns, "in-netns")
    token_file = tmp_path / "pod.token"
    token_file.write_text(pod_identity.pod_token(ns, pod), encoding="utf-8")

    cert = serving_cert_for(pod_identity.cluster, tmp_path, "broker-veth", netns.host_ip)
    broker = pod_identity.spawn_broker("broker-netns", cert=cert)
    agent = Process(
        "agent-netns",
        [
            "ip",
            "netns",
            "exec",
            netns.name,
            sys.executable,
            "-m",
            "webhook",
            "agent",
            f"--broker-url=https://{netns.host_ip}:{broker.port}",
            f"--broker-ca={pod_identity.ca}",
            f"--cluster-name={CLUSTER_NAME}",
            f"--token-file={pod_identity.agent_token_file('node-a')}",
            "--node-name=node-a",
        ],
        tmp_path / "agent-netns.log",
        env=pod_identity.cluster.env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_until(
            lambda: "pod-id-link0" in netns.run("ip", "addr", check=False).stdout,
            timeout=20,
            what="the agent's link",
            alive=lambda: None if agent.running else f"{agent.describe()} exited",
        )
        addresses = netns.run("ip", "addr", "show", "pod-id-link0").stdout
        assert "169.254.170.23/32" in addresses
        assert "fd00:ec2::23/128" in addresses

        def credentials(url: str) -> list[str] | None:
            answer = netns.run(sys.executable, "-c", CLIENT, url, str(token_file), check=False)
            return json.loads(answer.stdout) if answer.returncode == 0 else None

        v4 = wait_until(
            lambda: credentials("http://169.254.170.23/v1/credentials"),
            timeout=30,
            what="credentials on 169.254.170.23",
            alive=lambda: None if agent.running else f"{agent.describe()} exited",
        )
        v6 = credentials("http://[fd00:ec2::23]/v1/credentials")
        assert v6 == v4  # the second answer is the agent's cached one

        sts = botocore.session.get_session().create_client(
            "sts",
            region_name=REGION,
            endpoint_url=pod_identity.sts_url,
            aws_access_key_id=v4[0],
            aws_secret_access_key=v4[1],
            aws_session_token=v4[2],
        )
        arn = sts.get_caller_identity()["Arn"]
        assert arn.startswith("arn:aws:sts::111122223333:assumed-role/e2e-netns/eks-")

        for host in ("evil.example", "169.254.170.23.nip.io", "127.0.0.1"):
            status = netns.run(sys.executable, "-c", RAW, "169.254.170.23", host).stdout.strip()
            assert status == "403", host
    finally:
        agent.stop()
        broker.process.stop()
    assert agent.returncode == 0  # SIGTERM: a graceful shutdown
