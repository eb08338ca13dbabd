"""How the client finds the API server: --kube-api, --kubeconfig, KUBECONFIG, in-cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kube.conftest import Start
from tests.kube.fakeapi import FakeApi
from tests.kube.helpers import eventually
from webhook.config import Config
from webhook.errors import ConfigError
from webhook.kube import client_configuration

pytestmark = pytest.mark.timeout(20)


TOKEN = "secret-token"


def kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_kube_api_alone_talks_plain_http_to_that_address_without_credentials():
    settings = client_configuration(Config(kube_api="http://127.0.0.1:8001"))

    assert settings.host == "http://127.0.0.1:8001"
    assert not settings.api_key


def test_without_any_setting_outside_a_cluster_start_up_fails_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)

    with pytest.raises(ConfigError, match="Error creating config"):
        client_configuration(Config())


def test_a_kubeconfig_that_does_not_exist_fails_with_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="Error creating config"):
        client_configuration(Config(kubeconfig=str(tmp_path / "missing")))


async def test_the_kubeconfig_flag_is_used_with_its_token(
    fake: FakeApi, start: Start, tmp_path: Path
):
    path = kubeconfig(tmp_path / "config", fake.url)

    running = start(kube_api="", kubeconfig=str(path))

    await eventually(lambda: running.store.ready and fake.watching() == 1)
    assert {r.authorization for r in fake.requests} == {"Bearer secret-token"}


async def test_the_kubeconfig_environment_variable_is_honoured(
    fake: FakeApi, start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", fake.url)))

    running = start(kube_api="")

    await eventually(lambda: running.store.ready)
    assert fake.recorded("list")[0].authorization == "Bearer secret-token"


async def test_kube_api_overrides_the_kubeconfig_server(
    fake: FakeApi, start: Start, tmp_path: Path
):
    path = kubeconfig(tmp_path / "config", "http://127.0.0.1:1")

    running = start(kube_api=fake.url, kubeconfig=str(path))

    await eventually(lambda: running.store.ready)
    assert fake.recorded("list")[0].authorization == "Bearer secret-token"
