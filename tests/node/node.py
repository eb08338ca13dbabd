"""A one-node cluster on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd and the kubelet, with a CNI bridge, in a network namespace of its own.

Layout (the third octet `n` is chosen per run, so two runs never share an address):

    host namespace                      node namespace `piw-node-<id>`
    piwh<id> 10.250.n.1/30  <-- veth --> piwn<id> 10.250.n.2/30 (the node's InternalIP)
    route 10.251.n.0/24 via 10.250.n.2  lo: 127.0.0.1, 10.0.0.1/32 (the `kubernetes` Service)
                                        bridge piw0 10.251.n.1/24 (CNI bridge + host-local)
                                        etcd 127.0.0.1:2379, kube-apiserver 0.0.0.0:443,
                                        kubelet 10.250.n.2:10250, containerd socket in workdir

Service routing without kube-proxy:
- the API server reaches webhooks through their Service with `--enable-aggregator-routing`:
  its service resolver picks a ready endpoint from the Service's EndpointSlices (the same
  resolver aggregated APIs use), so no ClusterIP needs to route;
- Pods reach the API server at the `kubernetes` Service's ClusterIP (10.0.0.1:443, what
  in-cluster clients use) because that address is the node namespace's own and the API
  server listens on 443 there.

Processes join the node's network namespace with `nsenter --net` only: they stay in the
host's mount namespace, where the kubelet's volume mounts must be for containerd to see them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.e2e import pki
from tests.e2e.cluster import Namespace, client_context, unique_name
from tests.e2e.kube import ApiError, Kube, configuration, write_kubeconfig
from tests.e2e.processes import Process, wait_until
from tests.node import machine
from tests.node.machine import MachineState, run
from webhook.certificates.issuing import make_serving_cert

NODE_NAME = "piw-node"
SERVICE_CIDR = "10.0.0.0/24"
API_SERVICE_IP = "10.0.0.1"
ISSUER = "https://kubernetes.default.svc"
API_PORT = 443
KUBELET_PORT = 10250
CNI_BIN_DIR = "/usr/lib/cni"
#: The sandbox image tests/node/images.py builds and imports.
PAUSE_IMAGE = "localhost/pod-identity-webhook-node-pause:1"
START_TIMEOUT = 60.0
POD_DELETE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Binaries:
    """The directory tools/kube/build.sh printed (etcd, kube-* and kubectl)."""

    directory: Path

    def __getitem__(self, name: str) -> Path:
        return self.directory / name


@dataclass(frozen=True)
class Addresses:
    run_id: str
    octet: int

    @property
    def netns(self) -> str:
        return f"piw-node-{self.run_id}"

    @property
    def host_if(self) -> str:
        return f"piwh{self.run_id}"

    @property
    def node_if(self) -> str:
        return f"piwn{self.run_id}"

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.octet}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.octet}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.251.{self.octet}.0/24"

    @property
    def cgroup_root(self) -> str:
        return f"/piw-node-{self.run_id}"

    def no_proxy(self) -> str:
        return f"127.0.0.1,localhost,{self.host_ip},{self.node_ip},{self.pod_cidr},{SERVICE_CIDR}"


def pick_addresses() -> Addresses:
    """A run id and a third octet whose 10.250.n.0/30 and 10.251.n.0/24 nobody routes yet."""
    routes = run("ip", "-4", "route", "show", "table", "all")
    for _ in range(50):
        octet = secrets.randbelow(250) + 1
        if f"10.250.{octet}." not in routes and f"10.251.{octet}." not in routes:
            return Addresses(secrets.token_hex(3), octet)
    raise RuntimeError("no free 10.250.n.0/30 and 10.251.n.0/24 found")


def serving_cert(
    ca: pki.KeyPair, directory: Path, stem: str, *, dns: Sequence[str], ips: Sequence[str]
) -> pki.KeyPair:
    cert, key = make_serving_cert(
        ca.cert, ca.key, dns_names=list(dns), ip_addresses=list(ips), days=2
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    return pki.KeyPair(cert, key, cert_path, key_path)


@dataclass
class Node:
    binaries: Binaries
    workdir: Path
    env: dict[str, str]
    addresses: Addresses = field(default_factory=pick_addresses)
    processes: dict[str, Process] = field(default_factory=dict)
    before: MachineState = field(default_factory=MachineState)
    ready_seconds: float = 0.0
    cleanup_problems: list[str] = field(default_factory=list)
    _network_made: bool = False
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    admin: Kube = field(init=False)
    ca: pki.KeyPair = field(init=False)
    sa_key: Path = field(init=False)
    admin_kubeconfig: Path = field(init=False)

    @property
    def server(self) -> str:
        return f"https://{self.addresses.node_ip}:{API_PORT}"

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.workdir / "kubelet"

    # -- start-up -----------------------------------------------------------------------------

    def start(self, *, images: Sequence[Path] = ()) -> None:
        """Everything up to a Ready node with `images` imported; on failure, undone."""
        started = time.monotonic()
        a = self.addresses
        machine.Record(
            netns=a.netns,
            host_if=a.host_if,
            workdir=str(self.workdir),
            cgroup_root=a.cgroup_root,
            containerd_socket=str(self.containerd_socket),
            sysctls=self.before.sysctls,
            netns_before=sorted(self.before.netns),
        ).save()
        try:
            self._network()
            self._certificates()
            self._etcd()
            self._apiserver()
            self._controllers()
            self._containerd(images)
            self._kubelet()
        except BaseException:
            self.close()
            raise
        self.ready_seconds = time.monotonic() - started

    def _in_node(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={machine.NETNS_DIR / self.addresses.netns}", "--", *argv]

    def _spawn(self, name: str, argv: Sequence[str], *, in_node: bool = True) -> Process:
        process = Process(
            name,
            self._in_node(argv) if in_node else list(argv),
            self.workdir / f"{name}.log",
            env=self.env,
        )
        self.processes[name] = process
        return process

    def _network(self) -> None:
        a = self.addresses
        run("ip", "netns", "add", a.netns)
        self._network_made = True
        run("ip", "link", "add", a.host_if, "type", "veth", "peer", "name", a.node_if)
        run("ip", "link", "set", a.node_if, "netns", a.netns)
        run("ip", "addr", "add", f"{a.host_ip}/30", "dev", a.host_if)
        run("ip", "link", "set", a.host_if, "up")
        in_ns = ("ip", "netns", "exec", a.netns)
        run(*in_ns, "ip", "link", "set", "lo", "up")
        run(*in_ns, "ip", "addr", "add", f"{API_SERVICE_IP}/32", "dev", "lo")
        run(*in_ns, "ip", "addr", "add", f"{a.node_ip}/30", "dev", a.node_if)
        run(*in_ns, "ip", "link", "set", a.node_if, "up")
        run(*in_ns, "ip", "route", "add", "default", "via", a.host_ip)
        # Pod addresses are reached through the node (tests, and the STS endpoint's answers);
        # the route goes away with the veth.
        run("ip", "route", "add", a.pod_cidr, "via", a.node_ip, "dev", a.host_if)

    def _certificates(self) -> None:
        directory = self.workdir / "pki"
        directory.mkdir()
        a = self.addresses
        self.ca = pki.certificate_authority(directory, "ca", "piw-node-ca")
        self.sa_key = pki.service_account_signing_key(directory / "sa.key")
        serving_cert(
            self.ca,
            directory,
            "apiserver",
            dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", a.node_ip, API_SERVICE_IP],
        )
        serving_cert(self.ca, directory, "kubelet-serving", dns=[NODE_NAME], ips=[a.node_ip])
        identities = {
            "admin": ("admin", ("system:masters",)),
            "kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
            "kube-controller-manager": ("system:kube-controller-manager", ()),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
        }
        for stem, (user, groups) in identities.items():
            pair = pki.client_cert(self.ca, directory, stem, user=user, groups=groups)
            server = f"https://127.0.0.1:{API_PORT}" if stem != "admin" else self.server
            write_kubeconfig(
                self.workdir / f"{stem}.kubeconfig",
                server=server,
                ca=self.ca.cert,
                cert=pair.cert,
                key=pair.key,
                user=user,
            )
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"

    def _pki(self, name: str) -> str:
        return str(self.workdir / "pki" / name)

    def _etcd(self) -> None:
        self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                f"--data-dir={self.workdir / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        # etcd answers on the node's loopback only: the API server's readiness covers it.

    def _apiserver(self) -> None:
        a = self.addresses
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0",
                f"--secure-port={API_PORT}",
                f"--advertise-address={a.node_ip}",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--tls-cert-file={self._pki('apiserver.crt')}",
                f"--tls-private-key-file={self._pki('apiserver.key')}",
                f"--client-ca-file={self._pki('ca.crt')}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.sa_key}",
                f"--service-account-signing-key-file={self.sa_key}",
                f"--kubelet-client-certificate={self._pki('kubelet-client.crt')}",
                f"--kubelet-client-key={self._pki('kubelet-client.key')}",
                f"--kubelet-certificate-authority={self._pki('ca.crt')}",
                "--kubelet-preferred-address-types=InternalIP",
                # Webhooks (and aggregated APIs) are called at a ready endpoint of their
                # Service, found in its EndpointSlices: there is no kube-proxy.
                "--enable-aggregator-routing=true",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        context = client_context(
            self.ca.cert_path,
            self.workdir / "pki" / "admin.crt",
            self.workdir / "pki" / "admin.key",
        )
        wait_until(
            lambda: self._readyz(context),
            timeout=START_TIMEOUT,
            what="kube-apiserver /readyz",
            alive=self._all_alive,
        )
        self.admin = Kube(
            configuration(
                self.server,
                self.ca.cert_path,
                self.workdir / "pki" / "admin.crt",
                self.workdir / "pki" / "admin.key",
            )
        )
        self._stack.callback(self.admin.close)

    def _readyz(self, context: ssl.SSLContext) -> bool:
        import http.client

        connection = http.client.HTTPSConnection(
            self.addresses.node_ip, API_PORT, context=context, timeout=2
        )
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def _controllers(self) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={self.workdir / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self._pki('ca.crt')}",
                f"--cert-dir={self.workdir / 'kube-controller-manager'}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                f"--kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={self.workdir / 'kube-scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                f"--cert-dir={self.workdir / 'kube-scheduler'}",
            ],
        )

        def default_service_account() -> bool:
            try:
                self.admin.get("/api/v1/namespaces/default/serviceaccounts/default")
                self.admin.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
            except ApiError:
                return False
            return True

        wait_until(
            default_service_account,
            timeout=START_TIMEOUT,
            what="kube-controller-manager (default ServiceAccount and kube-root-ca.crt)",
            alive=self._all_alive,
        )

    def _containerd(self, images: Sequence[Path]) -> None:
        base = self.workdir / "containerd"
        (base / "root").mkdir(parents=True)
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-piw.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "piw",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "piw0",
                            "isGateway": True,
                            # No masquerading: the host answers Pods at their own addresses.
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": self.addresses.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(cni / "ipam"),
                            },
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{base / "ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni / "net.d"}"
"""
        (base / "config.toml").write_text(config, encoding="utf-8")
        containerd = self._spawn(
            "containerd", ["containerd", f"--config={base / 'config.toml'}", "--log-level=warn"]
        )
        wait_until(
            self.containerd_socket.exists,
            timeout=START_TIMEOUT,
            what="containerd's socket",
            alive=lambda: (
                None if containerd.running else f"containerd exited; see {containerd.log_path}"
            ),
        )
        for archive in images:
            self.ctr("images", "import", str(archive), timeout=300)

    def ctr(self, *argv: str, timeout: float = 60) -> str:
        return run(
            "ctr",
            f"--address={self.containerd_socket}",
            "--namespace=k8s.io",
            *argv,
            timeout=timeout,
        )

    def _kubelet(self) -> None:
        directory = self.kubelet_dir
        directory.mkdir()
        a = self.addresses
        # cgroupfs driver under a root of this run's own, created here and removed at the end.
        for controller in machine.CGROUP_ROOT.iterdir():
            if controller.is_dir() and not controller.is_symlink():
                (controller / a.cgroup_root.strip("/")).mkdir(exist_ok=True)
        # A new cpuset (cgroup v1) has no CPUs or memory nodes until given its parent's.
        cpuset = machine.CGROUP_ROOT / "cpuset"
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (cpuset / name).exists():
                value = (cpuset / name).read_text()
                (cpuset / a.cgroup_root.strip("/") / name).write_text(value)
        kubelet_config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": a.node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": a.cgroup_root,
            "failCgroupV1": False,
            "failSwapOn": False,
            # No KUBE-FIREWALL and friends: nothing here needs them (they would live in the
            # node's namespace anyway).
            "makeIPTablesUtilChains": False,
            "tlsCertFile": self._pki("kubelet-serving.crt"),
            "tlsPrivateKeyFile": self._pki("kubelet-serving.key"),
            "authentication": {
                "x509": {"clientCAFile": self._pki("ca.crt")},
                "webhook": {"enabled": False},
                "anonymous": {"enabled": False},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(directory / "pod-logs"),
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "resolvConf": "",
            "serializeImagePulls": False,
            "registerNode": True,
            "shutdownGracePeriod": "0s",
            # Secret volumes follow their Secret within seconds (certificate rotation).
            "syncFrequency": "10s",
        }
        (directory / "config.yaml").write_text(yaml.safe_dump(kubelet_config), encoding="utf-8")
        kubelet = self._spawn(
            "kubelet",
            [
                str(self.binaries["kubelet"]),
                f"--config={directory / 'config.yaml'}",
                f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
                f"--root-dir={directory / 'root'}",
                f"--cert-dir={directory / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={a.node_ip}",
                "--v=1",
            ],
        )

        def ready() -> bool:
            try:
                node = self.admin.get(f"/api/v1/nodes/{NODE_NAME}")
            except ApiError:
                return False
            conditions = node.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_until(
            ready,
            timeout=START_TIMEOUT,
            what="the node Ready",
            alive=lambda: None if kubelet.running else f"kubelet exited; see {kubelet.log_path}",
        )

    def _all_alive(self) -> str | None:
        for process in self.processes.values():
            if not process.running:
                return f"{process.describe()} exited"
        return None

    # -- helpers for tests --------------------------------------------------------------------

    def namespace(self, prefix: str) -> Namespace:
        """A new namespace (its `default` ServiceAccount comes from the controller-manager)."""
        name = unique_name(prefix)
        self.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return Namespace(self.admin, name)

    def kubectl(self, *argv: str, timeout: float = 120, check: bool = True) -> str:
        return run(
            str(self.binaries["kubectl"]),
            f"--kubeconfig={self.admin_kubeconfig}",
            *argv,
            timeout=timeout,
            check=check,
        )

    # -- teardown -----------------------------------------------------------------------------

    def _delete_all_pods(self) -> None:
        """Workloads first (nothing recreates their Pods), then every Pod on the node, each
        stopped by the kubelet so that its sandbox, network namespace and mounts go with it."""
        namespaces = self.admin.get("/api/v1/namespaces")["items"]
        for item in namespaces:
            name = item["metadata"]["name"]
            for kind in ("deployments", "replicasets", "daemonsets", "statefulsets"):
                with contextlib.suppress(ApiError):
                    self.admin.request(
                        "DELETE",
                        f"/apis/apps/v1/namespaces/{name}/{kind}",
                        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                    )
        pods = self.admin.get(f"/api/v1/pods?fieldSelector=spec.nodeName={NODE_NAME}")["items"]
        for pod in pods:
            metadata = pod["metadata"]
            with contextlib.suppress(ApiError):
                self.admin.request(
                    "DELETE",
                    f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
                )

        def gone() -> bool:
            left = self.admin.get(f"/api/v1/pods?fieldSelector=spec.nodeName={NODE_NAME}")
            if left["items"]:
                return False
            # A stopped sandbox has lost its network namespace and mounts already; its container
            # record waits for the kubelet's garbage collection, once a minute, so it is not
            # waited for (_kill_leftover_tasks deletes it). Anything still running is.
            tasks = self.ctr("tasks", "list").splitlines()[1:]
            return all(line.split()[2] == "STOPPED" for line in tasks if line.strip())

        wait_until(gone, timeout=POD_DELETE_TIMEOUT, what="every Pod gone and every task stopped")

    def _sandbox_netns(self) -> set[str]:
        """The `cni-*` network namespaces of this containerd's sandboxes."""
        names = set()
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            for container in self.ctr("containers", "list", "--quiet").split():
                info = json.loads(self.ctr("containers", "info", container))
                for namespace in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                    path = namespace.get("path", "")
                    if namespace.get("type") == "network" and path.startswith("/var/run/netns/"):
                        names.add(Path(path).name)
        return names

    def _kill_leftover_tasks(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            for line in self.ctr("tasks", "list").splitlines()[1:]:
                task = line.split()[0]
                self.ctr("tasks", "kill", "--signal", "SIGKILL", task, timeout=10)
        with contextlib.suppress(RuntimeError, OSError):
            for line in self.ctr("tasks", "list").splitlines()[1:]:
                self.ctr("tasks", "delete", "--force", line.split()[0], timeout=10)
        with contextlib.suppress(RuntimeError, OSError):
            for container in self.ctr("containers", "list", "--quiet").split():
                self.ctr("containers", "delete", container, timeout=10)

    def _shims(self) -> list[int]:
        """PIDs of containerd shims started for this run's socket."""
        return [
            pid
            for pid in machine.processes_with(str(self.containerd_socket).encode())
            if pid != getattr(self.processes.get("containerd"), "pid", None)
        ]

    def close(self) -> None:
        """Stop everything and undo what the node changed; problems go to cleanup_problems."""
        sandbox_netns = self._stop_processes()
        self._stack.close()
        self._undo_machine(sandbox_netns)

    def _stop_processes(self) -> set[str]:
        """Pods, then the node's processes in dependency order; returns the Pods' network
        namespaces, asked of containerd before it stops."""
        problems = self.cleanup_problems
        sandbox_netns: set[str] = set()
        kubelet = self.processes.get("kubelet")
        if kubelet is not None and kubelet.running and getattr(self, "admin", None) is not None:
            try:
                self._delete_all_pods()
            except (AssertionError, ApiError, RuntimeError) as exc:
                problems.append(f"Pods not stopped by the kubelet: {exc}")
        if "containerd" in self.processes and self.processes["containerd"].running:
            sandbox_netns = self._sandbox_netns()
        for name in ("kubelet", "kube-scheduler", "kube-controller-manager"):
            if name in self.processes:
                self.processes[name].stop()
        if "containerd" in self.processes and self.processes["containerd"].running:
            self._kill_leftover_tasks()
            self.processes["containerd"].stop()
        for pid in self._shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for name in ("kube-apiserver", "etcd"):
            if name in self.processes:
                self.processes[name].stop()
        return sandbox_netns

    def _undo_machine(self, sandbox_netns: set[str]) -> None:
        """Mounts, network namespaces, cgroups, sysctls, the host link and the big directories."""
        problems = self.cleanup_problems
        left = machine.unmount_all(self.workdir)
        if left:
            problems.append(f"mounts left: {left}")
        for name in sandbox_netns | (machine.netns_names() - self.before.netns):
            if name.startswith("cni-"):
                machine.delete_netns(name)
        left_cgroups = machine.remove_cgroups(self.addresses.cgroup_root)
        if left_cgroups:
            problems.append(f"cgroups left: {[str(p) for p in left_cgroups[:5]]}")
        problems += self.before.restore_sysctls()
        if self._network_made:
            machine.delete_netns(self.addresses.netns)
            with contextlib.suppress(RuntimeError):
                run("ip", "link", "delete", self.addresses.host_if, check=False)
        # containerd's content and snapshots are hundreds of megabytes.
        shutil.rmtree(self.workdir / "containerd", ignore_errors=True)
        shutil.rmtree(self.kubelet_dir / "root", ignore_errors=True)
        machine.Record.clear()

    def leftovers(self) -> list[str]:
        """What a finished run must not leave behind."""
        found = [p.describe() for p in self.processes.values() if p.running]
        found += [f"shim pid {pid}" for pid in self._shims()]
        found += [f"mount {m}" for m in machine.mounts_under(self.workdir)]
        found += [
            f"netns {n}"
            for n in machine.netns_names() - self.before.netns
            if n.startswith("cni-") or n == self.addresses.netns
        ]
        found += [f"cgroup {d}" for d in machine.cgroup_dirs(self.addresses.cgroup_root)]
        found += [f"sysctl {k}: {v}" for k, v in self.before.changed_sysctls().items()]
        if self.addresses.host_if in run("ip", "-o", "link", "show", check=False):
            found.append(f"link {self.addresses.host_if}")
        return found

    def log_tails(self, lines: int = 25) -> str:
        parts = [f"node logs in {self.workdir}"]
        for process in self.processes.values():
            parts.append(f"--- {process.describe()}, last {lines} lines ---")
            parts.append(process.tail(lines))
        return "\n".join(parts)
