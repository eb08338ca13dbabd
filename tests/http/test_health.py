"""/healthz (liveness) and /readyz (readiness) on the webhook port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.http.conftest import CertFiles, MakeHarness
from webhook.certificates.serving import CertificateReloader, server_context
from webhook.server.lifecycle import background

pytestmark = pytest.mark.timeout(20)


async def test_healthz_answers_ok(make_harness: MakeHarness):
    harness = await make_harness()

    response = await harness.client.get("/healthz")

    assert response.status == 200
    assert await response.text() == "ok"


async def test_healthz_answers_ok_even_before_the_cache_has_synced(make_harness: MakeHarness):
    harness = await make_harness(synced=False)

    response = await harness.client.get("/healthz")

    assert response.status == 200


async def test_readyz_is_503_until_the_service_accounts_have_synced(make_harness: MakeHarness):
    harness = await make_harness(synced=False)

    before = await harness.client.get("/readyz")
    assert before.status == 503
    assert "ServiceAccounts not synced" in await before.text()

    harness.store.replace_service_accounts([])

    after = await harness.client.get("/readyz")
    assert after.status == 200
    assert await after.text() == "ok"


async def test_readyz_is_503_while_the_certificates_are_not_loaded(
    make_harness: MakeHarness, cert_files: CertFiles
):
    reloader = CertificateReloader(
        server_context("1.2", ()), str(cert_files.cert), str(cert_files.key)
    )
    harness = await make_harness(certificates=reloader)

    before = await harness.client.get("/readyz")
    assert before.status == 503
    assert await before.text() == "not ready: certificates not loaded"

    reloader.load()

    after = await harness.client.get("/readyz")
    assert after.status == 200


async def test_readyz_names_every_missing_piece(make_harness: MakeHarness, tmp_path: Path):
    reloader = CertificateReloader(
        server_context("1.2", ()), str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    )
    harness = await make_harness(synced=False, certificates=reloader)
    harness.store.config_map_synced = False

    response = await harness.client.get("/readyz")

    assert response.status == 503
    assert await response.text() == (
        "not ready: certificates not loaded, ServiceAccounts not synced, ConfigMap not synced"
    )


async def test_readyz_stays_ready_when_the_cache_is_emptied_later(make_harness: MakeHarness):
    harness = await make_harness()

    harness.store.replace_service_accounts([])

    assert (await harness.client.get("/readyz")).status == 200


async def test_healthz_and_readyz_are_not_on_the_metrics_port(make_harness: MakeHarness):
    harness = await make_harness()

    assert (await harness.metrics_client.get("/healthz")).status == 404
    assert (await harness.metrics_client.get("/readyz")).status == 404


async def test_a_background_loop_that_dies_is_logged_and_named_on_readyz(
    make_harness: MakeHarness,
):
    harness = await make_harness()

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    with capture_logs() as logs:
        async with background(harness.hook, "certificate-reload", broken):
            for _ in range(100):
                if harness.hook.stopped_tasks:
                    break
                await asyncio.sleep(0.01)
            response = await harness.client.get("/readyz")

    assert response.status == 503
    assert "background task certificate-reload stopped" in await response.text()
    (died,) = [entry for entry in logs if entry["event"] == "background_task_died"]
    assert (died["task"], died["log_level"]) == ("certificate-reload", "error")


async def test_a_background_loop_is_cancelled_and_awaited_when_its_block_ends(
    make_harness: MakeHarness,
):
    harness = await make_harness()
    finished = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            finished.set()

    async with background(harness.hook, "poll", forever):
        await asyncio.sleep(0)
    assert finished.is_set()
    assert harness.hook.stopped_tasks == set()
    assert (await harness.client.get("/readyz")).status == 200
