"""The Pod auditor (--audit-pods): finds Pods that run without the credentials the webhook
would give them now, and says so once per Pod.

A Pod can be admitted without its credentials although its ServiceAccount asks for a role: the
webhook was unreachable and the failurePolicy is Ignore, the caBundle went stale, another
mutator rewrote the Pod. Its SDK then quietly falls back to the node's role. The auditor lists
and watches Pods (not finished ones), keeps a `SlimPod` of each (about 300 bytes; see README
"The Pod auditor"), and judges each with the admission core's own `decide`: when a Pod arrives
or changes, and every --resync-period for all (so a role annotation added later counts too).
A Pod found lacking is counted in `pod_identity_webhook_pods_without_credentials{namespace}`,
logged, and gets one Kubernetes Event (named after its UID, so replicas that all audit create
it once). With --audit-delete-pods a lacking Pod that has a controller is deleted, at most one
per --audit-delete-interval, never in kube-system and never one without an owner, so that its
controller recreates it through the webhook; a controller whose replacement comes back without
credentials too is left alone (the webhook is still not reached, and deleting again would only
churn).

The watch runs in a thread (the Kubernetes client is synchronous) and reduces each Pod there;
judging runs on the event loop in small batches, so admissions are never held up for long.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from webhook.admission.integrity import Finding, Interner, SlimPod, Sweep, slim
from webhook.admission.mutation import Sources
from webhook.config import Config
from webhook.errors import ApiError
from webhook.kube import Api, Reflector

__all__ = ["Auditor", "deletion_refusal"]

log = structlog.get_logger("webhook.audit")

EVENT_REASON = "MissingCredentials"
COMPONENT = "pod-identity-webhook"
PROTECTED_NAMESPACE = "kube-system"  # never deleted in, whatever the flags say
#: Finished Pods no longer run without credentials; the watch leaves them out.
FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"
BATCH = 200  # Pods judged between two yields to the event loop
JOIN_TIMEOUT = 5.0
DELETION_MEMORY = 3600.0  # seconds a deletion is remembered for the replacement check

Action = Callable[[str, str], None]


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deletion_refusal(pod: SlimPod, deleted: dict[str, str]) -> str | None:
    """Why `pod` must not be deleted, or None. `deleted` maps an owner's UID to the time
    (RFC 3339) the auditor last deleted one of its Pods."""
    if pod.namespace == PROTECTED_NAMESPACE:
        return f"Pods in {PROTECTED_NAMESPACE} are never deleted"
    if pod.owner is None:
        return "it has no controller to recreate it"
    since = deleted.get(pod.owner.uid)
    if since is not None and pod.created >= since:
        return (
            f"{pod.owner.kind} {pod.owner.name} recreated a Pod without credentials after the "
            "last deletion: the webhook is still not reached"
        )
    return None


class Auditor:
    """The Pod watch, the judging loop, the Events and the optional deletions."""

    def __init__(
        self,
        api: Api,
        sources: Sources,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        *,
        synced: Callable[[], bool],
        serving: Callable[[], bool],
        on_error: Callable[[str], None] | None = None,
        on_action: Action | None = None,
    ) -> None:
        self._api, self._sources, self._config, self._loop = api, sources, config, loop
        self._synced, self._serving = synced, serving
        self._on_action = on_action
        self._excluded = frozenset(config.audit_exclude_namespaces)
        self._interner = Interner()
        self.pods: dict[str, SlimPod] = {}
        self.findings: dict[str, tuple[SlimPod, Finding]] = {}
        self._dirty: set[str] = set()
        self._reported: set[str] = set()
        self._queue: collections.deque[str] = collections.deque()
        self._deleted: dict[str, str] = {}
        self._last_deletion = 0.0
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._instance = socket.gethostname()
        self._reflector = Reflector(
            api=api,
            path="/api/v1/pods",
            query={"fieldSelector": FIELD_SELECTOR},
            on_list=self._listed,
            on_event=self._changed,
            watch_seconds=max(1, int(config.resync_period)),
            name="pods",
            stop=self._stop,
            on_error=on_error,
        )
        self._thread = threading.Thread(target=self._reflector.run, name="audit-pods", daemon=True)

    # -- the watch thread -------------------------------------------------------------------

    def _slim(self, obj: Any) -> SlimPod | None:
        if not isinstance(obj, dict):
            return None
        prefix = self._config.mutation.annotation_prefix
        return slim(obj, prefix, self._interner, self._excluded)

    def _listed(self, items: Iterable[Any]) -> None:
        self._interner.clear()  # values of Pods gone since the last list are dropped
        pods = {}
        for obj in items:
            pod = self._slim(obj)
            if pod is not None:
                pods[pod.uid] = pod
        self._call(self._replace, pods)

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        if len(self._interner) > 2 * len(self.pods) + 1024:
            self._interner.clear()
        pod = None if kind == "DELETED" else self._slim(obj)
        if pod is not None:
            self._call(self._put, pod)
            return
        metadata = obj.get("metadata")
        uid = metadata.get("uid") if isinstance(metadata, dict) else None
        if isinstance(uid, str):
            self._call(self._forget, uid)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: shutting down
            self._stop.set()

    # -- the event loop ---------------------------------------------------------------------

    def _replace(self, pods: dict[str, SlimPod]) -> None:
        self.pods = pods
        self.findings = {uid: found for uid, found in self.findings.items() if uid in pods}
        self._reported &= set(pods)
        self._dirty = set(pods)
        self._wake.set()

    def _put(self, pod: SlimPod) -> None:
        self.pods[pod.uid] = pod
        self._dirty.add(pod.uid)
        self._wake.set()

    def _forget(self, uid: str) -> None:
        self.pods.pop(uid, None)
        self.findings.pop(uid, None)
        self._reported.discard(uid)
        self._dirty.discard(uid)

    def counts(self) -> collections.Counter[str]:
        """Pods without credentials by namespace, for the metric."""
        return collections.Counter(pod.namespace for pod, _ in self.findings.values())

    def start(self) -> None:
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        self._api.close_watches()
        await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.warning("audit_watch_still_running")

    async def run(self) -> None:
        """Judge changed Pods as they come, every Pod each resync period, and delete what is
        due; until cancelled."""
        sweep = max(1.0, self._config.resync_period)
        next_sweep = time.monotonic() + sweep
        while True:
            waits = [next_sweep - time.monotonic()]
            if self._queue:
                waits.append(self._last_deletion + self._config.audit_delete_interval - time.time())
            if not self._synced():
                waits.append(0.5)  # the ServiceAccounts are not listed yet: judge nothing
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(waits))):
                    await self._wake.wait()
            self._wake.clear()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep
                self._dirty.update(self.pods)
                self._forget_old_deletions()
            if self._synced():
                await self._judge()
                await self._delete_due()

    async def _judge(self) -> None:
        dirty, self._dirty = self._dirty, set()
        judge = Sweep(self._sources, self._config.mutation)
        for count, uid in enumerate(dirty, 1):
            pod = self.pods.get(uid)
            if pod is None:
                continue
            finding = judge(pod)
            if finding is None:
                self.findings.pop(uid, None)
            else:
                self.findings[uid] = (pod, finding)
                if uid not in self._reported:
                    self._reported.add(uid)
                    await self._report(pod, finding)
                    judge = Sweep(self._sources, self._config.mutation)  # sources may have moved
            if count % BATCH == 0:
                await asyncio.sleep(0)
                judge = Sweep(self._sources, self._config.mutation)

    async def _report(self, pod: SlimPod, finding: Finding) -> None:
        log.warning(
            "pod_without_credentials",
            namespace=pod.namespace,
            pod=pod.name,
            service_account=finding.service_account,
            containers=list(finding.containers),
            method=finding.method,
            role_arn=finding.role_arn or None,
        )
        result = await asyncio.to_thread(self._create_event, pod, finding)
        if result == "error":
            self._reported.discard(pod.uid)  # tried again on the next sweep
        self._action("event", result)
        if not self._config.audit_delete_pods:
            return
        refusal = deletion_refusal(pod, self._deleted)
        if refusal is None:
            self._queue.append(pod.uid)
            self._wake.set()
        else:
            log.info("pod_not_deleted", namespace=pod.namespace, pod=pod.name, reason=refusal)
            self._action("delete", "refused")

    def _create_event(self, pod: SlimPod, finding: Finding) -> str:
        now = _timestamp(time.time())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named after the Pod's UID: each replica's auditor tries, one creates it.
            "metadata": {"name": f"{pod.name[:200]}.{pod.uid}", "namespace": pod.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": pod.uid,
            },
            "reason": EVENT_REASON,
            "message": finding.message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._api.send("POST", f"/api/v1/namespaces/{pod.namespace}/events", event)
        except ApiError as exc:
            if exc.status == 409:
                return "exists"
            log.warning("audit_event_failed", namespace=pod.namespace, pod=pod.name, error=str(exc))
            return "error"
        return "created"

    async def _delete_due(self) -> None:
        """Delete the next queued Pod when the interval allows and this replica serves (a Pod
        recreated while the webhook cannot answer would come back without credentials)."""
        interval = self._config.audit_delete_interval
        while self._queue and time.time() - self._last_deletion >= interval:
            uid = self._queue.popleft()
            found = self.findings.get(uid)
            if found is None:
                continue  # gone, or fixed since
            pod = found[0]
            refusal = deletion_refusal(pod, self._deleted)
            if refusal is not None or not self._serving():
                reason = refusal or "this webhook replica is not ready"
                log.info("pod_not_deleted", namespace=pod.namespace, pod=pod.name, reason=reason)
                self._action("delete", "refused")
                continue
            self._last_deletion = time.time()
            result = await asyncio.to_thread(self._delete, pod)
            if result == "deleted" and pod.owner is not None:
                self._deleted[pod.owner.uid] = _timestamp(self._last_deletion)
            self._action("delete", result)
            return

    def _delete(self, pod: SlimPod) -> str:
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": pod.uid}}
        try:
            self._api.send("DELETE", path, options)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or a new Pod of the same name
                return "gone"
            log.warning(
                "audit_delete_failed", namespace=pod.namespace, pod=pod.name, error=str(exc)
            )
            return "error"
        owner = pod.owner
        log.warning(
            "pod_deleted_for_credentials",
            namespace=pod.namespace,
            pod=pod.name,
            owner=f"{owner.kind}/{owner.name}" if owner else None,
        )
        return "deleted"

    def _forget_old_deletions(self) -> None:
        horizon = _timestamp(time.time() - DELETION_MEMORY)
        self._deleted = {uid: at for uid, at in self._deleted.items() if at >= horizon}

    def _action(self, action: str, result: str) -> None:
        if self._on_action is not None:
            self._on_action(action, result)
