"""Session fixture of the differential tier: upstream's Go webhook and ours, side by side.

One throw-away cluster (etcd + kube-apiserver from `tests.e2e.cluster`), the ServiceAccounts,
ConfigMap and container-credentials file of `generator.world()`, then two webhook processes
with the same flags, the same serving certificate and the same RBAC-limited kubeconfig:

* ours: `python -m webhook ...`;
* upstream: the binary from `tools/upstream/build.sh` (or `UPSTREAM_WEBHOOK_BIN`).

Upstream has no /readyz: both are "ready" when reviews for a ServiceAccount-annotated, a
ConfigMap and a container-credentials identity come back mutated.

The tier carries the `e2e` marker (it runs, and is deselected, with the e2e tier). Without a
kube-apiserver or the upstream binary it is skipped with one reason, or fails when
POD_IDENTITY_WEBHOOK_REQUIRE_E2E=1 (CI).
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import subprocess
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.differential.generator import (
    COMMON_FLAGS,
    NAMESPACES,
    WEBHOOK_NAMESPACE,
    world,
)
from tests.e2e.cluster import (
    REPO,
    WEBHOOK_LABEL,
    Binaries,
    Cluster,
    WebhookProcess,
    client_context,
    find_binaries,
)
from tests.e2e.processes import child_environment, wait_until
from tests.support.logs import log_directory
from tests.support.ports import free_port
from tests.support.reviews import make_pod, make_review, patch_or_none
from tests.support.tiers import REQUIRE_E2E, executable, run_script, unavailable

UPSTREAM_BUILD = REPO / "tools" / "upstream" / "build.sh"
TIER = Path(__file__).resolve().parent
#: Namespaces of the tier carry WEBHOOK_LABEL with this value (so no e2e webhook serves them).
SELECTOR = "differential"
READY_TIMEOUT = 45.0

FOUND = pytest.StashKey["Found | str"]()
PAIR = pytest.StashKey["Pair"]()
REPORTS = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class Found:
    kube: Binaries
    upstream: Path
    upstream_how: str


def _in_tier(item: pytest.Item) -> bool:
    """A test of this tier that needs the cluster (the classifier's own tests do not)."""
    return item.get_closest_marker("e2e") is not None and Path(
        str(item.path)
    ).resolve().is_relative_to(TIER)


def _build_log(config: pytest.Config) -> Path:
    return log_directory(config, "differential")


def find_upstream(build_log: Path) -> tuple[Path, str] | str:
    """The upstream binary (and how it was found), or why there is none (one line)."""
    found = run_script(UPSTREAM_BUILD, log=build_log)
    if isinstance(found, str):
        return f"no upstream webhook binary: {found}"
    if not executable(found):
        return f"no upstream webhook binary: {found} is not an executable"
    how = "UPSTREAM_WEBHOOK_BIN" if os.environ.get("UPSTREAM_WEBHOOK_BIN") else "build.sh"
    return found, how


def _find(config: pytest.Config) -> Found | str:
    if FOUND not in config.stash:
        directory = _build_log(config)
        kube = find_binaries(directory / "kube-build.log")
        if isinstance(kube, str):
            config.stash[FOUND] = kube
        else:
            upstream = find_upstream(directory / "upstream-build.log")
            config.stash[FOUND] = (
                upstream if isinstance(upstream, str) else Found(kube, upstream[0], upstream[1])
            )
    return config.stash[FOUND]


def pytest_collection_finish(session: pytest.Session) -> None:
    # Builds (minutes when cold) happen here, outside any test's timeout.
    if session.config.option.collectonly:
        return
    if any(_in_tier(item) for item in session.items):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "differential: finding kube-apiserver/etcd and the upstream webhook "
                "(tools/upstream/build.sh; minutes when cold)"
            )
        _find(session.config)


def _unavailable(found: Found | str) -> None:
    if isinstance(found, str):
        unavailable("differential tier", found, require=REQUIRE_E2E)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    found = item.config.stash.get(FOUND, None)
    if found is not None and _in_tier(item):
        _unavailable(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    pair = item.config.stash.get(PAIR, None)
    if report.failed and pair is not None and _in_tier(item):
        report.sections.append(("differential process logs", pair.cluster.log_tails(20)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    pair = terminalreporter.config.stash.get(PAIR, None)
    reports = terminalreporter.config.stash.get(REPORTS, [])
    if pair is None:
        return
    terminalreporter.write_sep("-", "differential tier")
    terminalreporter.write_line(
        f"upstream {pair.upstream_version} ({pair.upstream_how}) vs ours; "
        f"ready in {pair.ready_seconds:.1f} s; logs in {pair.cluster.workdir}"
    )
    for text in reports:
        terminalreporter.write_line(text)


def record_report(config: pytest.Config, text: str) -> None:
    config.stash.setdefault(REPORTS, []).append(text)


# --- the pair of webhooks -----------------------------------------------------------------


@dataclass
class Pair:
    cluster: Cluster
    ours: WebhookProcess
    upstream: WebhookProcess
    upstream_version: str
    upstream_how: str
    ready_seconds: float = 0.0
    configurations: dict[str, str] = field(default_factory=dict)


def _upstream_version() -> str:
    result = subprocess.run(
        [str(UPSTREAM_BUILD), "--version"], capture_output=True, check=False, cwd=REPO
    )
    return result.stdout.decode().strip() or "?"


def spawn_upstream(cluster: Cluster, binary: Path, *flags: str) -> WebhookProcess:
    """Upstream's binary with the same TLS pair, kubeconfig and identity as ours."""
    port, metrics_port = free_port(), free_port()
    argv = [
        str(binary),
        "--in-cluster=false",
        f"--kubeconfig={cluster.webhook_kubeconfig}",
        f"--port={port}",
        f"--metrics-port={metrics_port}",
        f"--tls-cert={cluster.webhook_cert.cert_path}",
        f"--tls-key={cluster.webhook_cert.key_path}",
        "--logtostderr",
        *flags,
    ]
    process = cluster._spawn("webhook-upstream", argv, cwd=REPO)
    webhook = WebhookProcess(
        "upstream",
        process,
        port,
        metrics_port,
        tuple(flags),
        client_context(cluster.webhook_ca.cert_path),
    )
    cluster.webhooks["upstream"] = webhook
    return webhook


def post_review(webhook: WebhookProcess, review: dict[str, Any]) -> dict[str, Any]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", webhook.port, context=webhook.context, timeout=5
    )
    try:
        connection.request(
            "POST", "/mutate", json.dumps(review), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise AssertionError(f"{webhook.name}: HTTP {response.status}: {body[:300]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def probe_review(namespace: str, service_account: str) -> dict[str, Any]:
    containers = [{"name": "app", "image": "registry.invalid/app:1"}]
    pod = make_pod(service_account, name="probe", namespace=namespace, containers=containers)
    return make_review(pod, uid=f"probe-{service_account}", namespace=namespace)


#: Sync probes: (ServiceAccount, a value the patch must contain once that source is loaded).
PROBES = (
    ("role", "AWS_ROLE_ARN"),
    ("cm-exact", "role/cm-exact"),
    ("cc", "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
)


def synced(webhook: WebhookProcess) -> bool:
    for service_account, needle in PROBES:
        answer = post_review(webhook, probe_review(NAMESPACES[0], service_account))
        patch = patch_or_none(answer.get("response", {}))
        if patch is None or needle not in json.dumps(patch):
            return False
    return True


def _populate(cluster: Cluster, cc_file: Path) -> None:
    state = world()
    for namespace in NAMESPACES:
        cluster.admin.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {WEBHOOK_LABEL: SELECTOR}},
            }
        )
        cluster.admin.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": namespace},
            }
        )
    for account in state.service_accounts:
        cluster.admin.create(account)
    cluster.admin.create(state.config_map)
    cc_file.write_text(json.dumps(state.container_credentials, indent=1) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    config = request.config
    found = _find(config)
    _unavailable(found)
    assert isinstance(found, Found)
    workdir = tmp_path_factory.mktemp("differential")
    cc_file = workdir / "container-credentials.json"
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "127.0.0.1,localhost")
        cluster = Cluster(found.kube, workdir, env=child_environment())
        try:
            cluster.start()
            assert WEBHOOK_NAMESPACE == "pod-identity-webhook"
            _populate(cluster, cc_file)
            flags = (
                *COMMON_FLAGS,
                f"--watch-container-credentials-config={cc_file}",
                *shlex.split(os.environ.get("DIFFERENTIAL_EXTRA_FLAGS", "")),
            )
            ours = cluster.spawn_webhook("ours", *flags)
            upstream = spawn_upstream(cluster, found.upstream, *flags)
            current = Pair(cluster, ours, upstream, _upstream_version(), found.upstream_how)
            config.stash[PAIR] = current
            for webhook in (ours, upstream):
                process = webhook.process
                wait_until(
                    lambda w=webhook: synced(w),  # type: ignore[misc]
                    timeout=READY_TIMEOUT,
                    what=f"webhook {webhook.name} to mutate its sync probes",
                    alive=lambda p=process: None if p.running else f"{p.describe()} exited",  # type: ignore[misc]
                )
            current.ready_seconds = time.monotonic() - started
            yield current
        finally:
            cluster.close()
        leftovers = cluster.leftovers()
        assert not leftovers, f"processes survived the teardown: {leftovers}"
