"""The Pod auditor's bookkeeping with a recording stand-in for the API (the real API server is
in tests/e2e/test_audit.py): one Event per Pod, fixed Pods dropped, deletions paced and refused
where they must be."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from tests.test_integrity import CONTROLLER, ROLE, stored
from webhook.admission.entries import parse_service_account
from webhook.audit.auditor import EVENT_REASON, Auditor
from webhook.config import Config, MutationConfig
from webhook.errors import ApiError
from webhook.sources.manifests import StaticSources


@dataclasses.dataclass
class RecordingApi:
    """Records what the auditor sends; `fail` maps a method to the status it answers."""

    sent: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    fail: dict[str, int] = dataclasses.field(default_factory=dict)

    def send(self, method: str, path: str, body: Any, **_: Any) -> dict[str, Any]:
        self.sent.append((method, path, body))
        if method in self.fail:
            raise ApiError(self.fail[method], "refused by the test")
        return {}

    def close_watches(self) -> None:
        pass

    def of(self, method: str) -> list[tuple[str, str, Any]]:
        return [item for item in self.sent if item[0] == method]


def sources() -> StaticSources:
    found = StaticSources()
    for namespace in ("team-a", "kube-system"):
        found.service_accounts[f"{namespace}/app"] = parse_service_account(
            {"eks.amazonaws.com/role-arn": ROLE}, MutationConfig()
        )
    return found


def make(api: RecordingApi, *, serving: bool = True, **flags: Any) -> Auditor:
    config = Config(audit_pods=True, **flags)
    auditor = Auditor(
        api,  # type: ignore[arg-type]
        sources(),
        config,
        asyncio.get_running_loop(),
        synced=lambda: True,
        serving=lambda: serving,
        on_action=lambda action, result: actions.append((action, result)),
    )
    actions: list[tuple[str, str]] = []
    auditor.actions = actions  # type: ignore[attr-defined]
    return auditor


async def listed(auditor: Auditor, *objects: dict[str, Any]) -> None:
    auditor._listed(objects)
    await asyncio.sleep(0)  # the hand-over from the watch thread


async def test_a_pod_without_credentials_gets_one_event_and_is_counted() -> None:
    api = RecordingApi()
    auditor = make(api)
    pod = stored()
    await listed(auditor, pod)
    await auditor._judge()
    ((method, path, event),) = api.sent
    assert (method, path) == ("POST", "/api/v1/namespaces/team-a/events")
    assert event["metadata"]["name"] == f"{pod['metadata']['name']}.{pod['metadata']['uid']}"
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert event["reason"] == EVENT_REASON
    assert event["type"] == "Warning"
    assert ROLE in event["message"]
    assert auditor.counts() == {"team-a": 1}
    auditor._dirty.update(auditor.pods)  # the next sweep
    await auditor._judge()
    assert len(api.sent) == 1  # once
    assert auditor.actions == [("event", "created")]  # type: ignore[attr-defined]


async def test_an_event_another_replica_made_is_not_made_again() -> None:
    api = RecordingApi(fail={"POST": 409})
    auditor = make(api)
    await listed(auditor, stored())
    await auditor._judge()
    auditor._dirty.update(auditor.pods)
    await auditor._judge()
    assert len(api.of("POST")) == 1
    assert auditor.actions == [("event", "exists")]  # type: ignore[attr-defined]


async def test_a_failed_event_is_tried_again_on_the_next_sweep() -> None:
    api = RecordingApi(fail={"POST": 500})
    auditor = make(api)
    await listed(auditor, stored())
    await auditor._judge()
    auditor._dirty.update(auditor.pods)
    await auditor._judge()
    assert len(api.of("POST")) == 2
    assert auditor.counts() == {"team-a": 1}


async def test_a_fixed_or_deleted_pod_is_no_longer_counted() -> None:
    api = RecordingApi()
    auditor = make(api)
    pod = stored()
    await listed(auditor, pod)
    await auditor._judge()
    fixed = stored()
    fixed["metadata"] = pod["metadata"]
    fixed["spec"]["containers"][0]["env"] = [
        {"name": "AWS_ROLE_ARN", "value": ROLE},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"},
    ]
    auditor._changed("MODIFIED", fixed)
    await asyncio.sleep(0)
    await auditor._judge()
    assert auditor.counts() == {}
    other = stored()
    await listed(auditor, other)
    await auditor._judge()
    assert auditor.counts() == {"team-a": 1}
    auditor._changed("DELETED", other)
    await asyncio.sleep(0)
    assert auditor.counts() == {}


async def test_deletion_is_off_by_default() -> None:
    api = RecordingApi()
    auditor = make(api)
    await listed(auditor, stored(owner=CONTROLLER))
    await auditor._judge()
    await auditor._delete_due()
    assert api.of("DELETE") == []


async def test_owned_pods_are_deleted_one_per_interval_with_a_uid_precondition() -> None:
    api = RecordingApi()
    auditor = make(api, audit_delete_pods=True, audit_delete_interval=3600.0)
    first, second = stored(owner=CONTROLLER), stored(owner=CONTROLLER)
    await listed(auditor, first, second)
    await auditor._judge()
    await auditor._delete_due()
    await auditor._delete_due()
    ((_, path, options),) = api.of("DELETE")
    deleted = first if first["metadata"]["name"] in path else second
    assert path == f"/api/v1/namespaces/team-a/pods/{deleted['metadata']['name']}"
    assert options["preconditions"] == {"uid": deleted["metadata"]["uid"]}


@pytest.mark.parametrize(
    ("pod", "serving", "why"),
    [
        (stored(), True, "no owner"),
        (stored(owner=CONTROLLER, namespace="kube-system"), True, "kube-system"),
        (stored(owner=CONTROLLER), False, "replica not ready"),
    ],
)
async def test_pods_that_must_not_be_deleted_are_not(
    pod: dict[str, Any], serving: bool, why: str
) -> None:
    api = RecordingApi()
    auditor = make(
        api,
        serving=serving,
        audit_delete_pods=True,
        audit_delete_interval=0.001,
        audit_exclude_namespaces=(),
    )
    await listed(auditor, pod)
    await auditor._judge()
    await auditor._delete_due()
    assert api.of("DELETE") == [], why
    assert ("delete", "refused") in auditor.actions  # type: ignore[attr-defined]
