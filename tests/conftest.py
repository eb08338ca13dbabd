"""Suite-wide pytest options: the `e2e` marker and choosing whether the e2e tier runs; the
hypothesis profiles; the signing keys the IRSA tests share."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.support.irsa import PrivateKey, signing_keys

#: Chooses the hypothesis profile; .ci/run sets it to "full".
HYPOTHESIS_PROFILE = "HYPOTHESIS_PROFILE"

# Generated inputs build whole Pods and run the real mutation: no per-example deadline (a loaded
# machine would turn it into flakiness). "fast" keeps `make unit` quick; "full" explores ten
# times more in CI.
settings.register_profile("fast", max_examples=100, deadline=None)
settings.register_profile("full", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE, "fast"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e", "end-to-end tier (real kube-apiserver and etcd)")
    group.addoption("--no-e2e", action="store_true", help="deselect the e2e tier")
    group.addoption("--only-e2e", action="store_true", help="run only the e2e tier")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test against a real kube-apiserver (tests/e2e)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_e2e, only_e2e = config.getoption("--no-e2e"), config.getoption("--only-e2e")
    if not no_e2e and not only_e2e:
        return
    if no_e2e and only_e2e:
        raise pytest.UsageError("--no-e2e and --only-e2e exclude each other")
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        is_e2e = item.get_closest_marker("e2e") is not None
        (kept if is_e2e == only_e2e else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def keys() -> dict[str, PrivateKey]:
    """Signing keys of every kind kube-apiserver uses (made once per session)."""
    return signing_keys()
