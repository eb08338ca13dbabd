"""The ServiceAccount reflector against the fake API server: list, watch, relist, recovery."""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import json
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from tests.kube.conftest import Running, Start
from tests.kube.fakeapi import SERVICE_ACCOUNTS, FakeApi, service_account
from tests.kube.helpers import ANNOTATED, eventually
from tests.support.ports import free_port
from tests.support.reviews import OTHER_ROLE, ROLE
from webhook import kube
from webhook.config import Config
from webhook.kube import Api, Reflector, client_configuration

pytestmark = pytest.mark.timeout(20)


def role_of(running: Running, key: str) -> str | None:
    namespace, _, name = key.partition("/")
    entry = running.store.service_account(namespace, name)
    return None if entry is None else entry.role_arn


# --- the initial list ---------------------------------------------------------------------------


async def test_the_first_list_fills_the_store_and_makes_it_ready(fake: FakeApi, start: Start):
    fake.add_service_account("default", "s3-reader", ANNOTATED)
    fake.add_service_account("kube-system", "default")

    running = start()
    assert not running.store.ready

    await eventually(lambda: running.store.ready, what="the first list")
    assert role_of(running, "default/s3-reader") == ROLE
    assert role_of(running, "kube-system/default") == ""
    assert len(running.store) == 2
    [listed] = fake.recorded("list")
    assert listed.query["limit"] == "500"


async def test_a_list_of_more_than_one_page_is_read_to_the_end(fake: FakeApi, start: Start):
    for index in range(1234):
        fake.add_service_account(f"ns-{index % 7}", f"sa-{index:04d}", broadcast=False)

    running = start()

    await eventually(lambda: running.store.ready, what="the paginated list")
    assert len(running.store) == 1234
    pages = fake.recorded("list")
    assert len(pages) == 3
    assert "continue" not in pages[0].query
    assert pages[1].query["continue"]
    assert pages[2].query["continue"]
    # The watch resumes from the first page's resourceVersion (the list's snapshot).
    await eventually(lambda: fake.watching() == 1)
    assert fake.recorded("watch")[0].resource_version == str(fake.revision)


async def test_a_list_that_fails_on_a_later_page_is_retried_whole(fake: FakeApi, start: Start):
    for index in range(1234):
        fake.add_service_account(f"ns-{index % 7}", f"sa-{index:04d}", broadcast=False)
    fake.page_failures = [500, 410]  # a failed page, then an expired continue token

    running = start()

    await eventually(lambda: running.store.ready, what="a whole list")
    assert len(running.store) == 1234
    starts = [r for r in fake.recorded("list") if "continue" not in r.query]
    assert len(starts) == 3
    assert running.errors == ["serviceaccounts", "serviceaccounts"]


async def test_the_watch_starts_from_the_lists_resource_version(fake: FakeApi, start: Start):
    fake.add_service_account("default", "a")
    version = str(fake.revision)

    start()

    await eventually(lambda: fake.watching() == 1)
    [watch] = fake.recorded("watch")
    assert watch.resource_version == version
    assert watch.query["watch"] == "1"
    assert watch.query["allowWatchBookmarks"] == "true"


async def test_the_watch_timeout_follows_the_resync_period(fake: FakeApi, start: Start):
    start(resync_period=7.0)

    await eventually(lambda: fake.watching() == 1)
    assert fake.recorded("watch")[0].query["timeoutSeconds"] == "7"


# --- watch events -------------------------------------------------------------------------------


async def test_watch_additions_modifications_and_deletions_reach_the_store(
    fake: FakeApi, start: Start
):
    fake.add_service_account("default", "gone-soon")
    running = start()
    await eventually(lambda: fake.watching() == 1)

    fake.add_service_account("default", "new", ANNOTATED)
    await eventually(lambda: role_of(running, "default/new") == ROLE, what="ADDED")

    fake.add_service_account("default", "new", {"eks.amazonaws.com/role-arn": OTHER_ROLE})
    await eventually(lambda: role_of(running, "default/new") == OTHER_ROLE, what="MODIFIED")

    fake.add_service_account("default", "new", None)
    await eventually(lambda: role_of(running, "default/new") == "", what="annotation removed")

    fake.delete(SERVICE_ACCOUNTS, "default/gone-soon")
    await eventually(lambda: role_of(running, "default/gone-soon") is None, what="DELETED")
    assert len(fake.recorded("list")) == 1


def consume(items: Iterable[Any]) -> None:
    """An on_list that reads the whole listing (its resourceVersion is known at the end)."""
    collections.deque(items, maxlen=0)


async def test_a_bookmark_moves_the_resource_version_on_without_an_event(fake: FakeApi):
    fake.add_service_account("default", "a")
    api = Api(client_configuration(Config(kube_api=fake.url)))
    stop = threading.Event()
    events: list[tuple[str, dict[str, Any]]] = []
    reflector = Reflector(
        api=api,
        path="/api/v1/serviceaccounts",
        query={},
        on_list=consume,
        on_event=lambda kind, obj: events.append((kind, obj)),
        watch_seconds=60,
        name="serviceaccounts",
        stop=stop,
    )
    thread = threading.Thread(target=reflector.run, daemon=True)
    thread.start()
    try:
        await eventually(lambda: fake.watch_open(1))
        first = fake.recorded("watch")[0].resource_version

        version = fake.bookmark()
        fake.end_watches()
        await eventually(lambda: fake.watch_open(2))

        assert int(version) > int(first)
        assert fake.recorded("watch")[1].resource_version == version
        assert events == []
        assert len(fake.recorded("list")) == 1
    finally:
        stop.set()
        while thread.is_alive():
            fake.end_watches()
            await asyncio.to_thread(thread.join, 0.05)


async def test_an_expired_watch_relists_and_drops_what_was_deleted_in_the_gap(
    fake: FakeApi, start: Start
):
    fake.add_service_account("default", "stays", ANNOTATED)
    fake.add_service_account("default", "deleted-in-the-gap", ANNOTATED)
    running = start()
    await eventually(lambda: fake.watching() == 1 and running.store.ready)
    assert role_of(running, "default/deleted-in-the-gap") == ROLE

    # The deletion never reaches the watch, and the history that held it is compacted: 410.
    fake.delete(SERVICE_ACCOUNTS, "default/deleted-in-the-gap", broadcast=False)
    fake.add_service_account("default", "created-in-the-gap", ANNOTATED, broadcast=False)
    fake.expire()

    await eventually(lambda: len(fake.recorded("list")) == 2, what="a relist")
    await eventually(lambda: role_of(running, "default/deleted-in-the-gap") is None)
    assert role_of(running, "default/created-in-the-gap") == ROLE
    assert role_of(running, "default/stays") == ROLE
    assert running.errors == []  # 410 is routine, not an API error
    await eventually(lambda: fake.watch_open(2))
    assert fake.recorded("watch")[1].resource_version == str(fake.revision)


async def test_a_watch_resumed_from_a_compacted_version_relists(fake: FakeApi, start: Start):
    running = start()
    await eventually(lambda: fake.watch_open(1))

    # The watch ends; before it is resumed the history is compacted, so the resume gets 410.
    fake.add_service_account("default", "missed", ANNOTATED, broadcast=False)
    fake.compacted[SERVICE_ACCOUNTS] = fake.revision
    fake.end_watches()

    await eventually(lambda: len(fake.recorded("list")) == 2, what="a relist")
    await eventually(lambda: role_of(running, "default/missed") == ROLE)
    await eventually(lambda: fake.watch_open(3))
    assert len(fake.recorded("list")) == 2


async def test_a_watch_answered_410_again_and_again_relists_with_backoff_not_in_a_loop(
    fake: FakeApi, start: Start
):
    for index in range(50):
        fake.add_service_account("default", f"sa-{index}", broadcast=False)
    running = start()
    await eventually(lambda: running.store.ready)

    # Every watch is refused as too old, even from the list's own resourceVersion (a lagging
    # watch cache). client-go backs off before each relist; a relist of a big cluster is costly.
    fake.compacted[SERVICE_ACCOUNTS] = 10**9
    fake.end_watches()
    await asyncio.sleep(1.0)

    # Backoff 0.05 s doubling to 0.4 s: about six relists in a second; allow twice that.
    relists = len(fake.recorded("list")) - 1
    assert relists <= 12, f"{relists} relists in one second"


async def test_a_watch_ended_by_the_server_resumes_from_the_last_event(fake: FakeApi, start: Start):
    running = start()
    await eventually(lambda: fake.watch_open(1))
    fake.add_service_account("default", "a", ANNOTATED)
    fake.add_service_account("default", "b", ANNOTATED)
    last = str(fake.revision)
    await eventually(lambda: role_of(running, "default/b") == ROLE)

    fake.end_watches()

    await eventually(lambda: fake.watch_open(2))
    assert fake.recorded("watch")[1].resource_version == last
    assert len(fake.recorded("list")) == 1


async def test_a_dropped_watch_connection_reconnects_from_the_last_event(
    fake: FakeApi, start: Start
):
    running = start()
    await eventually(lambda: fake.watch_open(1))
    fake.add_service_account("default", "a", ANNOTATED)
    last = str(fake.revision)
    await eventually(lambda: role_of(running, "default/a") == ROLE)

    fake.disconnect()  # the connection breaks in the middle of the chunked stream

    await eventually(
        lambda: len(fake.recorded("watch")) >= 2, timeout=2.0, what="a new watch or list"
    )
    assert running.threads_alive()
    resumed = fake.recorded("watch")[-1].resource_version
    # Resuming from the last event is best; a relist is acceptable; giving up is not.
    assert resumed == last or len(fake.recorded("list")) == 2
    fake.add_service_account("default", "after", ANNOTATED)
    await eventually(lambda: role_of(running, "default/after") == ROLE)


async def test_events_missed_while_disconnected_are_replayed_on_resume(fake: FakeApi, start: Start):
    running = start()
    await eventually(lambda: fake.watch_open(1))
    fake.add_service_account("default", "a", ANNOTATED)
    await eventually(lambda: role_of(running, "default/a") == ROLE)

    fake.end_watches()
    fake.delete(SERVICE_ACCOUNTS, "default/a", broadcast=False)
    fake.add_service_account("default", "b", ANNOTATED, broadcast=False)

    await eventually(lambda: role_of(running, "default/b") == ROLE)
    assert role_of(running, "default/a") is None
    assert len(fake.recorded("list")) == 1


def _weird_annotations() -> dict[str, Any]:
    weird = service_account("default", "weird")
    weird["metadata"]["annotations"] = ["not", "a", "mapping"]
    return {"type": "ADDED", "object": weird}


MALFORMED: dict[str, bytes] = {
    "not JSON": b"{this is not json",
    "a JSON array": b"[1, 2, 3]",
    "a JSON string": b'"a string"',
    "no object": b'{"type": "ADDED"}',
    "an object that is a string": b'{"type": "ADDED", "object": "not an object"}',
    "an unknown event type": b'{"type": "SURPRISE", "object": {"metadata": {"name": "x"}}}',
    "no namespace": b'{"type": "ADDED", "object": {"metadata": {"name": "no-namespace"}}}',
    "metadata that is a string": b'{"type": "ADDED", "object": {"metadata": "not a mapping"}}',
    "no metadata": b'{"type": "DELETED", "object": {"kind": "ServiceAccount"}}',
    "annotations that are a list": json.dumps(_weird_annotations()).encode(),
}


@pytest.mark.parametrize("line", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_watch_event_is_skipped_and_the_watch_goes_on(
    fake: FakeApi, start: Start, line: bytes
):
    fake.add_service_account("default", "listed", ANNOTATED)
    running = start()
    await eventually(lambda: fake.watch_open(1))

    fake.send_raw(line)
    fake.add_service_account("default", "good", ANNOTATED)

    await eventually(lambda: role_of(running, "default/good") == ROLE, timeout=1.5)
    assert running.threads_alive()
    assert role_of(running, "default/listed") == ROLE
    assert len(fake.recorded("list")) == 1
    assert running.errors == []


async def test_a_malformed_line_split_across_chunks_does_not_hide_the_next_event(
    fake: FakeApi, start: Start
):
    running = start()
    await eventually(lambda: fake.watch_open(1))
    good = json.dumps({"type": "ADDED", "object": service_account("default", "split")})

    fake.send_raw(b'{"type": "ADDED", "obj\n' + good[:20].encode(), newline=False)
    await asyncio.sleep(0.05)  # two chunks, read apart
    fake.send_raw(good[20:].encode())

    await eventually(lambda: role_of(running, "default/split") == "", timeout=1.5)


async def test_a_watch_error_other_than_410_backs_off_and_relists(fake: FakeApi, start: Start):
    running = start()
    await eventually(lambda: fake.watch_open(1))

    fake.send({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}})

    await eventually(lambda: len(fake.recorded("list")) == 2, what="a relist")
    assert running.errors == ["serviceaccounts"]
    assert running.threads_alive()


# --- failures and recovery ----------------------------------------------------------------------


async def test_list_errors_at_start_back_off_growing_but_bounded_then_recover(
    fake: FakeApi, start: Start
):
    fake.add_service_account("default", "a", ANNOTATED)
    fake.list_failures[SERVICE_ACCOUNTS] = 500

    running = start()

    await eventually(lambda: len(fake.recorded("list")) >= 7, what="seven list attempts")
    assert not running.store.ready
    assert running.threads_alive()
    stamps = [r.at for r in fake.recorded("list")][:7]
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    # Backoff 0.05 s doubling to a 0.4 s cap, each with ±20 % jitter.
    assert gaps[1] > gaps[0] * 1.2
    assert gaps[2] > gaps[1] * 1.2
    assert gaps[3] > gaps[2] * 1.2
    assert all(gap < kube.BACKOFF_MAX * 1.2 + 0.15 for gap in gaps), gaps
    assert all(gap > kube.BACKOFF_MAX * 0.8 for gap in gaps[3:]), gaps
    assert running.sample("pod_identity_webhook_api_errors_total", source="serviceaccounts") >= 6

    del fake.list_failures[SERVICE_ACCOUNTS]

    await eventually(lambda: running.store.ready, what="recovery")
    assert role_of(running, "default/a") == ROLE


async def test_a_slow_list_keeps_the_store_not_ready_until_it_answers(fake: FakeApi, start: Start):
    fake.add_service_account("default", "a")
    fake.list_delay = 0.4

    running = start()

    await eventually(lambda: len(fake.recorded("list")) == 1)
    await asyncio.sleep(0.2)
    assert not running.store.ready
    await eventually(lambda: running.store.ready)
    assert running.errors == []


async def test_an_api_server_unreachable_at_start_is_retried_until_it_answers(start: Start):
    port = free_port()
    running = start(kube_api=f"http://127.0.0.1:{port}")

    await eventually(lambda: len(running.errors) >= 3, what="connection failures")
    assert not running.store.ready
    assert running.threads_alive()

    late = FakeApi()
    late.add_service_account("default", "a", ANNOTATED)
    await late.start(port)
    try:
        await eventually(lambda: running.store.ready, what="the late API server")
        assert role_of(running, "default/a") == ROLE
    finally:
        await running.kubernetes.close()
        assert running.kubernetes.stopped
        await late.close()


async def test_the_store_keeps_its_entries_and_recovers_after_the_api_server_goes_away(
    fake: FakeApi, start: Start
):
    fake.add_service_account("default", "a", ANNOTATED)
    running = start()
    await eventually(lambda: running.store.ready and fake.watching() == 1)
    port = fake.port

    await fake.close()  # every connection drops; new ones are refused
    await eventually(lambda: len(running.errors) >= 2, timeout=2.0, what="connection failures")
    assert role_of(running, "default/a") == ROLE
    assert running.store.ready  # readiness is about the first sync, not the last

    fake.add_service_account("default", "b", ANNOTATED, broadcast=False)
    await fake.start(port)

    await eventually(lambda: role_of(running, "default/b") == ROLE, what="resync")
    assert running.threads_alive()


async def test_a_list_answer_that_is_not_json_is_retried(fake: FakeApi, start: Start):
    fake.add_service_account("default", "a")
    original = fake._list
    answers = iter([b"<html>proxy error</html>", b'{"items": "not a list"}'])

    def broken(request: Any, resource: str, accepts: Any) -> Any:
        from aiohttp import web

        body = next(answers, None)
        if body is None:
            return original(request, resource, accepts)
        return web.Response(body=body, content_type="application/json")

    fake._list = broken  # type: ignore[method-assign]
    running = start()

    await eventually(lambda: running.store.ready)
    assert len(fake.recorded("list")) == 3
    assert running.errors == ["serviceaccounts", "serviceaccounts"]


# --- memory -------------------------------------------------------------------------------------


async def test_the_listed_objects_are_not_kept_once_the_store_is_filled(
    fake: FakeApi, start: Start
):
    for index in range(1000):
        fake.add_service_account(f"ns-{index % 10}", f"sa-{index:04d}", broadcast=False)
    running = start()
    await eventually(lambda: running.store.ready and fake.watching() == 1)

    # Only the small parsed entries should stay: at 100,000 ServiceAccounts the raw JSON objects
    # are ~400 MiB of Python dicts (see benchmarks/scale). The fake's own copies do not count.
    own = {id(obj) for obj in fake.objects[SERVICE_ACCOUNTS].values()}
    own |= {id(obj) for _, _, obj in fake.history[SERVICE_ACCOUNTS]}
    gc.collect()
    # Only this test's ServiceAccounts (sa-NNNN): other tests of the same session keep
    # rendered manifests with ServiceAccounts of their own (tests/deploy caches its variants).
    kept = [
        obj
        for obj in gc.get_objects()
        if type(obj) is dict
        and obj.get("kind") == "ServiceAccount"
        and str((obj.get("metadata") or {}).get("name", "")).startswith("sa-")
        and id(obj) not in own
    ]
    assert len(kept) < 10, f"{len(kept)} raw ServiceAccount objects are still referenced"
    assert len(running.store) == 1000


async def test_an_event_split_across_chunks_is_reassembled(fake: FakeApi, start: Start):
    running = start()
    await eventually(lambda: fake.watch_open(1))
    event = json.dumps({"type": "ADDED", "object": service_account("default", "split", ANNOTATED)})

    fake.send_raw(event[:25].encode(), newline=False)
    await asyncio.sleep(0.05)  # two chunks, read apart
    fake.send_raw(event[25:].encode())

    await eventually(lambda: role_of(running, "default/split") == ROLE)
