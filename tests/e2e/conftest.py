"""Fixtures of the e2e tier: one cluster per session, namespaces per test, logs on failure.

The binaries are found (or built, which can take minutes on a cold machine) once the test
items are known, outside any test's timeout. Without them the tier is skipped with one reason,
unless POD_IDENTITY_WEBHOOK_REQUIRE_E2E=1 (CI), which makes it fail instead.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import (
    WEBHOOK_NAMESPACE,
    Binaries,
    Cluster,
    Namespace,
    WebhookProcess,
    find_binaries,
    needs_build,
)
from tests.e2e.podidentity import pod_identity  # noqa: F401 - the Pod Identity tier's fixture
from tests.e2e.processes import child_environment
from tests.support.logs import log_directory
from tests.support.tiers import REQUIRE_E2E, unavailable

BINARIES = pytest.StashKey[Binaries | str]()
CLUSTER = pytest.StashKey[Cluster]()
WATCH_SECONDS = 2

#: The webhook processes of the session: name → (MutatingWebhookConfiguration name, flags).
WEBHOOKS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Upstream's defaults: everything comes from the cluster's ServiceAccounts.
    "main": ("pod-identity-webhook", ()),
    # Non-default flags: a region, and container-credentials identities from a file.
    "flags": (
        "pod-identity-webhook-flags",
        ("--aws-default-region=eu-west-2", "--watch-container-credentials-config={cc_file}"),
    ),
    # The pod-identity-webhook ConfigMap in the webhook's namespace; short watches, so that
    # the tier sees them renewed.
    "configmap": (
        "pod-identity-webhook-configmap",
        (
            "--watch-config-map=true",
            f"--namespace={WEBHOOK_NAMESPACE}",
            "--token-audience=e2e-flag-audience",
            f"--resync-period={WATCH_SECONDS}s",
        ),
    ),
}


def _build_log(config: pytest.Config) -> Path:
    return log_directory(config, "e2e") / "build.log"


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or BINARIES in config.stash:
        return
    if not any(item.get_closest_marker("e2e") for item in session.items):
        return
    build_log = _build_log(config)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and needs_build():
        reporter.write_line(
            "e2e: building kube-apiserver and etcd with tools/kube/build.sh "
            f"(minutes when cold; log: {build_log})"
        )
    config.stash[BINARIES] = find_binaries(build_log)


def _unavailable(found: Binaries | str) -> None:
    """Skip (one summary line for the whole tier), or fail when the tier is required."""
    if isinstance(found, str):
        unavailable("e2e tier", found, require=REQUIRE_E2E)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Raised here rather than in the fixture, the skip has one location for every test, so
    # `-ra` prints a single line for the tier.
    found = item.config.stash.get(BINARIES, None)
    if found is not None and item.get_closest_marker("e2e"):
        _unavailable(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    cluster = item.config.stash.get(CLUSTER, None)
    if report.failed and cluster is not None and item.get_closest_marker("e2e"):
        report.sections.append(("e2e process logs", cluster.log_tails()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    cluster = terminalreporter.config.stash.get(CLUSTER, None)
    if cluster is not None and cluster.ready_seconds:
        terminalreporter.write_line(
            f"e2e: kube-apiserver, etcd and {len(WEBHOOKS)} webhooks ready in "
            f"{cluster.ready_seconds:.1f} s ({cluster.binaries.how}); logs in {cluster.workdir}"
        )


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    config = request.config
    if BINARIES not in config.stash:
        config.stash[BINARIES] = find_binaries(_build_log(config))
    found = config.stash[BINARIES]
    _unavailable(found)
    assert isinstance(found, Binaries)
    workdir = tmp_path_factory.mktemp("e2e")
    cc_file = workdir / "container-credentials.json"
    cc_file.write_text('{"identities": []}\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "127.0.0.1,localhost")
        cluster = Cluster(found, workdir, env=child_environment())
        cluster.cc_file = cc_file
        config.stash[CLUSTER] = cluster
        try:
            cluster.start()
            spawned = [
                (
                    cluster.spawn_webhook(name, *(f.format(cc_file=cc_file) for f in flags)),
                    configuration,
                )
                for name, (configuration, flags) in WEBHOOKS.items()
            ]
            for webhook, configuration in spawned:
                cluster.wait_ready(webhook)
                cluster.register(
                    cluster.webhook_configuration(configuration, webhook, webhook.name)
                )
            for webhook, _ in spawned:
                cluster.wait_mutating(webhook.name, process=webhook)
            cluster.mark_ready()
            yield cluster
        finally:
            cluster.close()
        leftovers = cluster.leftovers()
        assert not leftovers, f"processes survived the teardown: {leftovers}"


@pytest.fixture
def make_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Callable[..., Namespace]:
    """`make_namespace(webhook="main", **labels)`: a fresh namespace named after the test."""

    def make(webhook: str | None = "main", **labels: str) -> Namespace:
        return cluster.namespace(request.node.name, webhook=webhook, **labels)

    return make


@pytest.fixture
def ns(make_namespace: Callable[..., Namespace]) -> Namespace:
    """A fresh namespace served by the webhook with default flags."""
    return make_namespace()


@pytest.fixture
def main_webhook(cluster: Cluster) -> WebhookProcess:
    return cluster.webhooks["main"]
