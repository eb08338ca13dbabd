"""The pod-identity-webhook ConfigMap reflector (--watch-config-map; docs/compatibility.md,
2d)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kube.conftest import MakeAdmission, Running, Start
from tests.kube.fakeapi import CONFIG_MAPS, SERVICE_ACCOUNTS, FakeApi, config_map
from tests.kube.helpers import eventually, injected_role, processed
from tests.support.reviews import OTHER_ROLE, ROLE

pytestmark = pytest.mark.timeout(20)

NAMESPACE = "eks"
KEY = f"{NAMESPACE}/pod-identity-webhook"


def config(**entries: Any) -> str:
    return json.dumps({key.replace("__", "/"): value for key, value in entries.items()})


def roles(running: Running, *keys: str) -> dict[str, str | None]:
    found = {}
    for key in keys:
        entry = running.store.config_map_entry(key)
        found[key] = None if entry is None else entry.role_arn
    return found


async def started(start: Start, fake: FakeApi, **given: Any) -> Running:
    given.setdefault("watch_config_map", True)
    given.setdefault("namespace", NAMESPACE)
    running = start(**given)
    await eventually(lambda: running.store.ready, what="both lists")
    await eventually(lambda: fake.watching(CONFIG_MAPS) == 1)
    return running


async def test_a_valid_config_map_fills_the_entries(fake: FakeApi, start: Start):
    fake.set_config_map(
        NAMESPACE,
        config(
            default__app={"RoleARN": ROLE, "UseRegionalSTS": True},
            **{"*__shared": {"rolearn": OTHER_ROLE}},
        ),
    )

    running = await started(start, fake)

    assert roles(running, "default/app", "*/shared") == {
        "default/app": ROLE,
        "*/shared": OTHER_ROLE,
    }
    entry = running.store.config_map_entry("default/app")
    assert entry is not None
    assert entry.regional_sts is True
    assert entry.audience == "sts.amazonaws.com"  # a missing Audience means the flag (2d)
    [listed] = fake.recorded("list", CONFIG_MAPS)
    assert listed.path == f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    assert listed.query["fieldSelector"] == "metadata.name=pod-identity-webhook"


async def test_a_config_map_change_on_the_watch_replaces_the_entries(fake: FakeApi, start: Start):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.set_config_map(NAMESPACE, config(default__other={"RoleARN": OTHER_ROLE}))

    await eventually(lambda: roles(running, "default/other")["default/other"] == OTHER_ROLE)
    assert roles(running, "default/app") == {"default/app": None}


async def test_invalid_json_keeps_the_previous_entries(fake: FakeApi, start: Start):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.set_config_map(NAMESPACE, "{not json")
    await processed(fake, CONFIG_MAPS)

    assert roles(running, "default/app") == {"default/app": ROLE}
    assert running.threads_alive()


@pytest.mark.parametrize(
    "text",
    [None, "[1, 2]", '"a string"', '{"default/app": {"RoleARN": 5}}'],
    ids=["no config key", "an array", "a string", "a wrongly typed field"],
)
async def test_an_unusable_config_keeps_the_previous_entries(
    fake: FakeApi, start: Start, text: str | None
):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.set_config_map(NAMESPACE, text)
    await processed(fake, CONFIG_MAPS)

    # A wrongly typed entry is skipped on its own (the rest of the document applies).
    expected = None if text is not None and "RoleARN" in text else ROLE
    assert roles(running, "default/app") == {"default/app": expected}
    assert running.threads_alive()


async def test_deleting_the_config_map_removes_its_entries(fake: FakeApi, start: Start):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.delete(CONFIG_MAPS, KEY)

    await eventually(lambda: roles(running, "default/app") == {"default/app": None})
    assert running.store.ready


async def test_a_config_map_deleted_while_the_watch_was_expired_is_dropped_on_relist(
    fake: FakeApi, start: Start
):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.delete(CONFIG_MAPS, KEY, broadcast=False)
    fake.expire(CONFIG_MAPS)

    await eventually(lambda: len(fake.recorded("list", CONFIG_MAPS)) == 2)
    await eventually(lambda: roles(running, "default/app") == {"default/app": None})


async def test_keys_without_a_slash_and_null_entries_are_skipped(fake: FakeApi, start: Start):
    text = json.dumps(
        {
            "no-slash": {"RoleARN": OTHER_ROLE},
            "default/null": None,
            "default/app": {"RoleARN": ROLE},
            "default/extra/segments": {"RoleARN": OTHER_ROLE},
        }
    )
    fake.set_config_map(NAMESPACE, text)

    running = await started(start, fake)

    assert roles(running, "default/app", "default/null", "no-slash", "default/extra") == {
        "default/app": ROLE,
        "default/null": None,
        "no-slash": None,
        "default/extra": OTHER_ROLE,
    }


async def test_a_null_config_clears_the_entries(fake: FakeApi, start: Start):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    fake.set_config_map(NAMESPACE, "null")

    await eventually(lambda: roles(running, "default/app") == {"default/app": None})


async def test_other_config_maps_are_ignored(fake: FakeApi, start: Start):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = await started(start, fake)

    # The field selector keeps them out; were one to slip through, the name check drops it.
    other = config_map(NAMESPACE, config(default__app={"RoleARN": OTHER_ROLE}), name="other")
    fake.send({"type": "MODIFIED", "object": other}, CONFIG_MAPS)
    fake.send({"type": "DELETED", "object": other}, CONFIG_MAPS)
    fake.set_config_map("elsewhere", config(default__app={"RoleARN": OTHER_ROLE}))
    await processed(fake, CONFIG_MAPS)

    assert roles(running, "default/app") == {"default/app": ROLE}


async def test_a_missing_config_map_is_synced_with_no_entries_and_picked_up_when_created(
    fake: FakeApi, start: Start
):
    running = await started(start, fake)

    assert running.store.config_map_synced
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))

    await eventually(lambda: roles(running, "default/app") == {"default/app": ROLE})


async def test_readiness_waits_for_the_config_map_when_it_is_watched(fake: FakeApi, start: Start):
    fake.list_failures[CONFIG_MAPS] = 500
    running = start(watch_config_map=True, namespace=NAMESPACE)

    await eventually(lambda: running.store.service_accounts_synced)
    await eventually(lambda: len(fake.recorded("list", CONFIG_MAPS)) >= 3)
    assert not running.store.config_map_synced
    assert not running.store.ready
    assert "configmap" in running.errors

    del fake.list_failures[CONFIG_MAPS]

    await eventually(lambda: running.store.ready)


async def test_without_the_flag_the_config_map_is_neither_listed_nor_waited_for(
    fake: FakeApi, start: Start
):
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    running = start(namespace=NAMESPACE)

    await eventually(lambda: running.store.ready)
    await eventually(lambda: fake.watching(SERVICE_ACCOUNTS) == 1)
    assert fake.recorded("list", CONFIG_MAPS) == []
    assert roles(running, "default/app") == {"default/app": None}


async def test_a_pod_gets_its_role_from_the_config_map_entry(
    fake: FakeApi, admission: MakeAdmission
):
    fake.add_service_account("default", "app")  # no role annotation: the ConfigMap decides
    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": ROLE}))
    webhook = await admission(watch_config_map=True, namespace=NAMESPACE, grace_period=0.0)
    await eventually(lambda: webhook.running.store.ready)

    assert injected_role(await webhook.review("app")) == ROLE

    fake.set_config_map(NAMESPACE, config(default__app={"RoleARN": OTHER_ROLE}))
    await eventually(lambda: roles(webhook.running, "default/app")["default/app"] == OTHER_ROLE)

    assert injected_role(await webhook.review("app")) == OTHER_ROLE
