"""Suite-wide pytest options: the `e2e` marker and choosing whether the e2e tier runs."""

from __future__ import annotations

import pytest

from tests.support.irsa import PrivateKey, signing_keys


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
