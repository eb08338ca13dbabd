"""Start-up as structure: a step that fails after the watches started still stops them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kube.fakeapi import FakeApi
from tests.kube.helpers import eventually
from webhook.certificates.issuing import make_ca, make_serving_cert
from webhook.config import Config
from webhook.errors import ConfigError
from webhook.server import lifecycle
from webhook.server.lifecycle import serve

pytestmark = pytest.mark.timeout(30)


def _reflectors() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("reflector-")}


async def test_a_failing_later_start_up_step_leaves_no_reflector_running(
    fake: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ca_cert, ca_key = make_ca()
    cert, key = make_serving_cert(ca_cert, ca_key, dns_names=["localhost"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    before = _reflectors()
    seen: set[threading.Thread] = set()

    def failing_extensions(*_: Any, **__: Any) -> None:
        # A later step (here: loading the rules) fails once the watches are really running.
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.update(_reflectors() - before)
        raise ConfigError("--rule broken: cannot load it")

    monkeypatch.setattr(lifecycle, "load_extensions", failing_extensions)
    config = Config(
        kube_api=fake.url,
        tls_cert=str(tmp_path / "tls.crt"),
        tls_key=str(tmp_path / "tls.key"),
        port=0,
        metrics_port=0,
    )

    with pytest.raises(ConfigError, match="--rule broken"):
        await serve(config)

    assert seen, "the reflectors were running when the later step failed"
    await eventually(lambda: not (_reflectors() - before), what="the reflectors to stop")
