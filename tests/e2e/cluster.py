"""The throw-away cluster: etcd, kube-apiserver and webhook processes, started and stopped.

`Cluster.start` follows controller-runtime's envtest: certificates, free loopback ports, etcd,
kube-apiserver (with RBAC, the ServiceAccount admission plugin and a token signing key), then
our webhook as separate `python -m webhook` processes with the real command line and the
RBAC-limited identity of `manifests/`, registered through a MutatingWebhookConfiguration made
from `manifests/base/mutatingwebhook.yaml` (clientConfig rewritten to a URL, selectors kept).
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import os
import secrets
import shutil
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import pki
from tests.e2e.kube import (
    ApiError,
    Kube,
    configuration,
    load_manifests,
    write_kubeconfig,
)
from tests.e2e.processes import Process, wait_until
from tests.support.ports import free_port
from tests.support.reviews import role_arn
from tests.support.tiers import executable, printed_directory, run_script
from webhook.certificates.issuing import ca_bundle

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
BUILD_SCRIPT = REPO / "tools" / "kube" / "build.sh"

WEBHOOK_NAMESPACE = "pod-identity-webhook"
WEBHOOK_SERVICE_ACCOUNT = "pod-identity-webhook"
WEBHOOK_USER = f"system:serviceaccount:{WEBHOOK_NAMESPACE}:{WEBHOOK_SERVICE_ACCOUNT}"
WEBHOOK_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{WEBHOOK_NAMESPACE}")

#: Namespaces opt into one webhook process with this label; every configuration made from the
#: manifest gets one extra `In` expression on it, next to the manifest's own selectors.
WEBHOOK_LABEL = "e2e.pod-identity-webhook/webhook"
MARKER_ROLE = role_arn("e2e-marker")
APISERVER_CLIENT_NAME = "e2e-kube-apiserver"

ETCD_READY_TIMEOUT = 30.0
APISERVER_READY_TIMEOUT = 45.0  # measured 2.3-3.3 s; pytest's timeout is 60 s a test
WEBHOOK_READY_TIMEOUT = 30.0
CONFIGURATION_TIMEOUT = 30.0


# --- binaries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    how: str


def needs_build() -> bool:
    """Whether find_binaries would have to compile (no supplied binaries, an empty cache)."""
    if os.environ.get("KUBEBUILDER_ASSETS") or os.environ.get("TEST_ASSET_KUBE_APISERVER"):
        return False
    if not executable(BUILD_SCRIPT) or shutil.which("go") is None:
        return False
    directory = printed_directory(BUILD_SCRIPT) or Path("/nonexistent")
    return not all(executable(directory / name) for name in ("kube-apiserver", "etcd"))


def find_binaries(build_log: Path) -> Binaries | str:
    """The binaries, or why there are none (one line).

    KUBEBUILDER_ASSETS, then TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD, then tools/kube/build.sh
    (reuses its cache, or builds when Go is installed; its output goes to `build_log`).
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS", "")
    if assets:
        apiserver, etcd = Path(assets) / "kube-apiserver", Path(assets) / "etcd"
        if executable(apiserver) and executable(etcd):
            return Binaries(apiserver, etcd, f"KUBEBUILDER_ASSETS={assets}")
    named = os.environ.get("TEST_ASSET_KUBE_APISERVER", ""), os.environ.get("TEST_ASSET_ETCD", "")
    if all(named):
        apiserver, etcd = Path(named[0]), Path(named[1])
        if executable(apiserver) and executable(etcd):
            return Binaries(apiserver, etcd, "TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD")
    found = run_script(BUILD_SCRIPT, "kube-apiserver", "etcd", log=build_log)
    if isinstance(found, Path):
        apiserver, etcd = found / "kube-apiserver", found / "etcd"
        if executable(apiserver) and executable(etcd):
            return Binaries(apiserver, etcd, f"tools/kube/build.sh ({found})")
        found = f"{found} holds no kube-apiserver and etcd"
    return f"no kube-apiserver/etcd: {found} (set KUBEBUILDER_ASSETS or install Go)"


# --- HTTPS probes ---------------------------------------------------------------------------


def https_get(
    port: int, path: str, context: ssl.SSLContext, timeout: float = 2.0
) -> tuple[int, str]:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


# --- the webhook processes ------------------------------------------------------------------


@dataclass
class WebhookProcess:
    """One `python -m webhook` process."""

    name: str
    process: Process
    port: int
    metrics_port: int
    flags: tuple[str, ...]
    context: ssl.SSLContext

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def readyz(self) -> tuple[int, str]:
        return https_get(self.port, "/readyz", self.context)

    def metrics(self) -> str:
        status, text = http_get(self.metrics_port, "/metrics")
        assert status == 200, text
        return text

    def stop(self) -> int:
        return self.process.stop()

    def log_records(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log records of one event whose fields have the given values."""
        records = []
        text = self.process.log_path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                records.append(record)
        return records

    def admissions(self, namespace: str) -> list[dict[str, Any]]:
        """The `admission` log records (one per review answered) for Pods in `namespace`."""
        return self.log_records("admission", namespace=namespace)


def metric_value(text: str, sample: str) -> float:
    """The value of one exposition line, e.g. `pod_identity_webhook_pod_count{method="x"}`."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- namespaces -----------------------------------------------------------------------------


def unique_name(prefix: str) -> str:
    """A fresh DNS-1123 label: namespaces are never really deleted (no controller-manager)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return f"{cleaned[:50].rstrip('-')}-{secrets.token_hex(3)}"


@dataclass
class Namespace:
    """A namespace of one test, with helpers that return objects as the API server stored them."""

    kube: Kube
    name: str

    def service_account(
        self, name: str, annotations: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": self.name}
        if annotations:
            metadata["annotations"] = dict(annotations)
        created: dict[str, Any] = self.kube.create(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}
        )
        return created

    def pod_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self.name}/pods/{name}"

    def create_pod(self, pod: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        body = copy.deepcopy(dict(pod))
        body.setdefault("metadata", {})["namespace"] = self.name
        created: dict[str, Any] = self.kube.create(body, dry_run=dry_run)
        return created

    def stored_pod(self, name: str) -> dict[str, Any]:
        stored: dict[str, Any] = self.kube.get(self.pod_path(name))
        return stored

    def run(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Create the Pod and read it back from the API server."""
        created = self.create_pod(pod)
        return self.stored_pod(created["metadata"]["name"])


# --- the cluster ----------------------------------------------------------------------------


@dataclass
class Cluster:
    binaries: Binaries
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    webhooks: dict[str, WebhookProcess] = field(default_factory=dict)
    configurations: list[str] = field(default_factory=list)
    cc_file: Path | None = None
    """The container-credentials identities file of the `flags` webhook."""
    ready_seconds: float = 0.0
    """From `start` to `mark_ready`: the session's start-up time."""
    _started: float = 0.0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    # set by start()
    api_port: int = 0
    etcd_url: str = ""
    admin: Kube = field(init=False)
    """A system:masters client."""
    webhook_identity: Kube = field(init=False)
    """A client with the webhook's own credentials (the ServiceAccount of manifests/)."""
    webhook_kubeconfig: Path = field(init=False)
    cluster_ca: pki.KeyPair = field(init=False)
    apiserver_cert: pki.KeyPair = field(init=False)
    admin_cert: pki.KeyPair = field(init=False)
    webhook_client_cert: pki.KeyPair = field(init=False)
    sa_key: Path = field(init=False)
    webhook_ca: pki.KeyPair = field(init=False)
    webhook_cert: pki.KeyPair = field(init=False)
    apiserver_client_ca: pki.KeyPair = field(init=False)
    """Signs the client certificate the API server presents to webhooks that ask for one."""
    apiserver_client_cert: pki.KeyPair = field(init=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def issuer(self) -> str:
        return self.server

    # -- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        """Everything but the webhook processes; on failure, what started is stopped."""
        self._started = time.monotonic()
        try:
            self._certificates()
            self._etcd()
            self._apiserver()
            self._webhook_identity()
        except BaseException:
            self.close()
            raise

    def mark_ready(self) -> None:
        self.ready_seconds = time.monotonic() - self._started

    def _certificates(self) -> None:
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir()
        self.cluster_ca = pki.certificate_authority(pki_dir, "ca", "e2e-cluster-ca")
        self.apiserver_cert = pki.loopback_serving_cert(self.cluster_ca, pki_dir, "apiserver")
        self.admin_cert = pki.client_cert(
            self.cluster_ca, pki_dir, "admin", user="admin", groups=("system:masters",)
        )
        self.webhook_client_cert = pki.client_cert(
            self.cluster_ca, pki_dir, "webhook-client", user=WEBHOOK_USER, groups=WEBHOOK_GROUPS
        )
        self.sa_key = pki.service_account_signing_key(pki_dir / "sa.key")
        self.webhook_ca = pki.certificate_authority(pki_dir, "webhook-ca", "e2e-webhook-ca")
        self.webhook_cert = pki.loopback_serving_cert(self.webhook_ca, pki_dir, "webhook")
        self.apiserver_client_ca = pki.certificate_authority(
            pki_dir, "apiserver-client-ca", "e2e-apiserver-client-ca"
        )
        self.apiserver_client_cert = pki.client_cert(
            self.apiserver_client_ca,
            pki_dir,
            "apiserver-client",
            user=APISERVER_CLIENT_NAME,
            groups=(),
        )

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Process:
        process = Process(
            name, argv, self.workdir / f"{name}.log", env={**self.env, **(env or {})}, cwd=cwd
        )
        self.processes.append(process)
        self._stack.callback(process.stop)
        return process

    def _etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self.etcd_url = client_url

        def healthy() -> bool:
            status, body = http_get(client_port, "/health")
            return status == 200 and "true" in body

        wait_until(
            healthy,
            timeout=ETCD_READY_TIMEOUT,
            what="etcd /health",
            alive=lambda: None if etcd.running else f"etcd exited; see {etcd.log_path}",
        )

    def _admission_configuration(self) -> Path:
        """The API server presents its client certificate to every webhook that asks for one
        (the kubeconfig's `*` user), as README "Authenticating the API server" sets it up."""
        kubeconfig = write_kubeconfig(
            self.workdir / "admission.kubeconfig",
            server="https://unused.invalid",
            ca=self.cluster_ca.cert,
            cert=self.apiserver_client_cert.cert,
            key=self.apiserver_client_cert.key,
            user="*",
        )
        path = self.workdir / "admission-configuration.yaml"
        plugin = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig),
        }
        document = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [{"name": "MutatingAdmissionWebhook", "configuration": plugin}],
        }
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    def _apiserver(self) -> None:
        self.api_port = free_port()
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--tls-cert-file={self.apiserver_cert.cert_path}",
                f"--tls-private-key-file={self.apiserver_cert.key_path}",
                f"--client-ca-file={self.cluster_ca.cert_path}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={self.issuer}",
                f"--service-account-key-file={self.sa_key}",
                f"--service-account-signing-key-file={self.sa_key}",
                "--allow-privileged=true",
                f"--admission-control-config-file={self._admission_configuration()}",
            ],
        )
        context = client_context(
            self.cluster_ca.cert_path, self.admin_cert.cert_path, self.admin_cert.key_path
        )
        wait_until(
            lambda: https_get(self.api_port, "/readyz", context)[0] == 200,
            timeout=APISERVER_READY_TIMEOUT,
            what="kube-apiserver /readyz",
            alive=lambda: (
                None if apiserver.running else f"kube-apiserver exited; see {apiserver.log_path}"
            ),
        )
        self.admin = Kube(
            configuration(
                self.server,
                self.cluster_ca.cert_path,
                self.admin_cert.cert_path,
                self.admin_cert.key_path,
            )
        )
        self._stack.callback(self.admin.close)
        write_kubeconfig(
            self.workdir / "admin.kubeconfig",
            server=self.server,
            ca=self.cluster_ca.cert,
            cert=self.admin_cert.cert,
            key=self.admin_cert.key,
            user="admin",
        )

    def _webhook_identity(self) -> None:
        """The webhook's namespace and RBAC from manifests/, and a kubeconfig for its identity."""
        self.admin.apply_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": WEBHOOK_NAMESPACE},
                }
            ]
        )
        self.admin.apply_all(load_manifests(MANIFESTS / "base" / "rbac.yaml"))
        self.admin.apply_all(load_manifests(MANIFESTS / "components" / "config-map" / "rbac.yaml"))
        self.webhook_kubeconfig = write_kubeconfig(
            self.workdir / "webhook.kubeconfig",
            server=self.server,
            ca=self.cluster_ca.cert,
            cert=self.webhook_client_cert.cert,
            key=self.webhook_client_cert.key,
            user=WEBHOOK_USER,
        )
        self.webhook_identity = Kube(
            configuration(
                self.server,
                self.cluster_ca.cert_path,
                self.webhook_client_cert.cert_path,
                self.webhook_client_cert.key_path,
            )
        )
        self._stack.callback(self.webhook_identity.close)

    # -- webhooks ---------------------------------------------------------------------------

    def spawn_webhook(
        self, name: str, *flags: str, env: Mapping[str, str] | None = None
    ) -> WebhookProcess:
        """Start `python -m webhook` with the real command line (and `env` added to the
        environment); does not wait."""
        port, metrics_port = free_port(), free_port()
        argv = [
            sys.executable,
            "-m",
            "webhook",
            "--in-cluster=false",
            f"--port={port}",
            f"--metrics-port={metrics_port}",
            f"--tls-cert={self.webhook_cert.cert_path}",
            f"--tls-key={self.webhook_cert.key_path}",
            f"--kubeconfig={self.webhook_kubeconfig}",
            # The API server calls the webhook's URL, no Service endpoints to wait out.
            "--shutdown-delay=0s",
            *flags,
        ]
        process = self._spawn(f"webhook-{name}", argv, cwd=REPO, env=env)
        webhook = WebhookProcess(
            name,
            process,
            port,
            metrics_port,
            tuple(flags),
            client_context(self.webhook_ca.cert_path),
        )
        self.webhooks[name] = webhook
        return webhook

    def wait_ready(self, webhook: WebhookProcess) -> None:
        """/readyz answers 200: certificates loaded and the ServiceAccount list synced."""
        process = webhook.process
        wait_until(
            lambda: webhook.readyz()[0] == 200,
            timeout=WEBHOOK_READY_TIMEOUT,
            what=f"webhook {webhook.name} /readyz",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )

    def webhook_configuration(
        self,
        name: str,
        webhook: WebhookProcess,
        selector: str,
        *,
        failure_policy: str | None = None,
    ) -> dict[str, Any]:
        """manifests/base/mutatingwebhook.yaml aimed at `webhook` and scoped to one label value."""
        (document,) = load_manifests(MANIFESTS / "base" / "mutatingwebhook.yaml")
        document["metadata"]["name"] = name
        for hook in document["webhooks"]:
            service = hook["clientConfig"]["service"]
            hook["clientConfig"] = {
                "url": f"{webhook.url}{service.get('path', '/')}",
                "caBundle": ca_bundle(self.webhook_ca.cert),
            }
            selector_terms = hook.setdefault("namespaceSelector", {})
            selector_terms.setdefault("matchExpressions", []).append(
                {"key": WEBHOOK_LABEL, "operator": "In", "values": [selector]}
            )
            if failure_policy is not None:
                hook["failurePolicy"] = failure_policy
        return document

    def register(self, configuration: Mapping[str, Any]) -> str:
        self.admin.create(configuration)
        name: str = configuration["metadata"]["name"]
        self.configurations.append(name)
        return name

    def unregister(self, name: str) -> None:
        self.admin.delete(
            f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        )
        if name in self.configurations:
            self.configurations.remove(name)

    def namespace(self, prefix: str, *, webhook: str | None, **labels: str) -> Namespace:
        """A new namespace (served by the webhook labelled `webhook`) with a `default` SA."""
        name = unique_name(prefix)
        if webhook is not None:
            labels[WEBHOOK_LABEL] = webhook
        self.admin.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )
        namespace = Namespace(self.admin, name)
        namespace.service_account("default")
        return namespace

    def wait_mutating(self, selector: str, *, process: WebhookProcess | None = None) -> None:
        """Resubmit a dry-run Pod until the webhook for `selector` has mutated it (the
        configuration reaches the API server's admission chain through an informer)."""
        namespace = self.namespace(f"e2e-marker-{selector}", webhook=selector)
        namespace.service_account("marker", {"eks.amazonaws.com/role-arn": MARKER_ROLE})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "marker"},
            "spec": {
                "serviceAccountName": "marker",
                "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            },
        }

        def mutated() -> bool:
            answer = namespace.create_pod(pod, dry_run=True)
            env = answer["spec"]["containers"][0].get("env") or []
            return any(item.get("value") == MARKER_ROLE for item in env)

        def alive() -> str | None:
            if process is not None and not process.process.running:
                return f"{process.process.describe()} exited"
            return None

        wait_until(
            mutated,
            timeout=CONFIGURATION_TIMEOUT,
            what=f"a dry-run Pod mutated by webhook {selector}",
            alive=alive,
        )

    # -- diagnostics and teardown -----------------------------------------------------------

    def log_tails(self, lines: int = 30) -> str:
        parts = [f"logs in {self.workdir}"]
        for process in self.processes:
            parts.append(f"--- {process.describe()}, last {lines} lines ---")
            parts.append(process.tail(lines))
        return "\n".join(parts)

    def close(self) -> None:
        """Delete our webhook configurations, then SIGTERM webhooks, kube-apiserver, etcd."""
        if getattr(self, "admin", None) is not None:
            for name in list(self.configurations):
                with contextlib.suppress(ApiError):
                    self.unregister(name)
        for webhook in self.webhooks.values():
            webhook.stop()
        self._stack.close()

    def leftovers(self) -> list[str]:
        return [process.describe() for process in self.processes if process.running]
