"""A small fake Kubernetes API server on loopback for the reflector, fetcher and scale tests.

It serves just what `webhook.kube` asks for, as the real API server answers it:

* `GET /api/v1/serviceaccounts`: a paginated list (`limit`/`continue`) carrying the list's
  `metadata.resourceVersion`, or with `?watch=1` a stream of newline-delimited JSON events;
* `GET /api/v1/namespaces/{ns}/serviceaccounts/{name}`: one object, or a 404 Status;
* `GET /api/v1/namespaces/{ns}/configmaps?fieldSelector=metadata.name=...`: list and watch.

State changes (`add`, `modify`, `delete`) bump a cluster-wide resourceVersion counter, are kept
in a per-resource history (so a watch resumed from an older resourceVersion replays what it
missed, until `expire` compacts the history: then the watch gets a 410 ERROR event) and are
pushed to the open watches. Faults are switched on by attributes (`list_failures`, `list_delay`,
`get_delay`, `get_status`) or scripted on the open watches (`send_raw`, `bookmark`, `expire`,
`end_watches`, `disconnect`). Every request is recorded in `requests` for assertions.

The server is plain aiohttp, so it runs either inside a test's event loop (`start`/`close`) or
in a process of its own (`python -m tests.kube.fakeapi --service-accounts N`, used by the scale
benchmark so that its memory is not counted against the webhook's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

SERVICE_ACCOUNTS = "serviceaccounts"
CONFIG_MAPS = "configmaps"
CONFIG_MAP_NAME = "pod-identity-webhook"
PREFIX = "eks.amazonaws.com"

Filter = Callable[[dict[str, Any]], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the fake saw it."""

    kind: str  # "list", "watch" or "get"
    resource: str
    path: str
    query: dict[str, str]
    at: float  # time.monotonic() on arrival
    authorization: str = ""

    @property
    def resource_version(self) -> str:
        return self.query.get("resourceVersion", "")


@dataclasses.dataclass(eq=False, slots=True)
class _Watch:
    number: int  # 1 for the first watch request of the fake, 2 for the next, ...
    resource: str
    accepts: Filter
    queue: asyncio.Queue[tuple[str, bytes]]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _key(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    return f"{metadata.get('namespace', '')}/{metadata['name']}"


def service_account(
    namespace: str,
    name: str,
    annotations: dict[str, str] | None = None,
    *,
    role_arn: str | None = None,
    noise: bool = False,
) -> dict[str, Any]:
    """A ServiceAccount object; `noise` adds the metadata a real cluster carries (~1 KB)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    given = dict(annotations or {})
    if role_arn is not None:
        given[f"{PREFIX}/role-arn"] = role_arn
    if noise:
        metadata |= {
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
            "creationTimestamp": "2026-01-15T10:20:30Z",
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": namespace,
                "app.kubernetes.io/managed-by": "Helm",
                "helm.sh/chart": f"{namespace}-chart-1.2.3",
            },
            "managedFields": [
                {
                    "manager": "helm",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-01-15T10:20:30Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:annotations": {
                                ".": {},
                                "f:meta.helm.sh/release-name": {},
                                "f:meta.helm.sh/release-namespace": {},
                            },
                            "f:labels": {
                                ".": {},
                                "f:app.kubernetes.io/managed-by": {},
                                "f:app.kubernetes.io/name": {},
                                "f:app.kubernetes.io/part-of": {},
                                "f:helm.sh/chart": {},
                            },
                        }
                    },
                }
            ],
        }
        given |= {
            "meta.helm.sh/release-name": f"{namespace}-release",
            "meta.helm.sh/release-namespace": namespace,
        }
    if given:
        metadata["annotations"] = given
    obj: dict[str, Any] = {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": metadata}
    if noise:
        obj["secrets"] = [{"name": f"{name}-token-{metadata['uid'][:5]}"}]
    return obj


def config_map(namespace: str, config: str | None, name: str = CONFIG_MAP_NAME) -> dict[str, Any]:
    """The webhook's ConfigMap; `config` is the raw text of its `config` key (None: no key)."""
    obj: dict[str, Any] = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace},
    }
    if config is not None:
        obj["data"] = {"config": config}
    return obj


class FakeApi:
    """The fake API server's state, faults and request log; `start` serves it."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {SERVICE_ACCOUNTS: {}, CONFIG_MAPS: {}}
        self.history: dict[str, list[tuple[int, str, dict[str, Any]]]] = {
            SERVICE_ACCOUNTS: [],
            CONFIG_MAPS: [],
        }
        self.compacted: dict[str, int] = {SERVICE_ACCOUNTS: 0, CONFIG_MAPS: 0}
        self.get_only: dict[str, dict[str, Any]] = {}
        """ServiceAccounts that a GET finds but lists and watches never show."""
        self.revision = 100
        self.requests: list[Recorded] = []
        self.gets: Counter[str] = Counter()
        # faults
        self.list_failures: dict[str, int] = {}
        """resource → HTTP status every list of it answers (until removed)."""
        self.page_failures: list[int] = []
        """HTTP statuses the next requests for a second or later page answer, one each."""
        self.list_delay = 0.0
        self.get_delay = 0.0
        self.get_status: dict[str, int] = {}
        """`ns/name` → HTTP status a GET of it answers."""
        self.closing = False
        self._sorted: dict[str, tuple[int, list[str]]] = {}
        """resource → (revision, sorted keys): pages of a big list must not re-sort each time."""
        self._watches: list[_Watch] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # serving ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/serviceaccounts", self._service_accounts)
        app.router.add_get(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}", self._get_service_account
        )
        app.router.add_get("/api/v1/namespaces/{namespace}/configmaps", self._config_maps)
        app.router.add_get("/fake/requests", self._requests)
        return app

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: any free port); again after `close` on the same port."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self, *, graceful: bool = False) -> None:
        """Stop listening, and drop every watch connection (an API server that went away).

        `graceful`: end the watches cleanly instead, as an API server shutting down does, and
        answer watches that arrive meanwhile with an empty stream.
        """
        if self._runner is not None:
            if graceful:
                self.closing = True
                self.end_watches()
            else:
                self.disconnect()
            await self._runner.cleanup()
            self._runner = None
            self.closing = False

    # state changes ------------------------------------------------------------------------------

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _change(self, resource: str, kind: str, obj: dict[str, Any], *, broadcast: bool) -> None:
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = version = self._bump()
        key = _key(obj)
        if kind == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        self.history[resource].append((int(version), kind, obj))
        if broadcast:
            self._push(resource, obj, _line({"type": kind, "object": obj}))

    def add(self, resource: str, obj: dict[str, Any], *, broadcast: bool = True) -> None:
        kind = "MODIFIED" if _key(obj) in self.objects[resource] else "ADDED"
        self._change(resource, kind, obj, broadcast=broadcast)

    def delete(self, resource: str, key: str, *, broadcast: bool = True) -> None:
        self._change(resource, "DELETED", self.objects[resource][key], broadcast=broadcast)

    def add_service_account(
        self,
        namespace: str,
        name: str,
        annotations: dict[str, str] | None = None,
        *,
        broadcast: bool = True,
    ) -> None:
        self.add(
            SERVICE_ACCOUNTS, service_account(namespace, name, annotations), broadcast=broadcast
        )

    def load_service_accounts(self, objects: Iterator[dict[str, Any]]) -> None:
        """Bulk load without history (a cluster that already exists)."""
        for obj in objects:
            obj["metadata"]["resourceVersion"] = self._bump()
            self.objects[SERVICE_ACCOUNTS][_key(obj)] = obj
        self.compacted[SERVICE_ACCOUNTS] = self.revision

    def set_config_map(self, namespace: str, config: str | None, *, broadcast: bool = True) -> None:
        self.add(CONFIG_MAPS, config_map(namespace, config), broadcast=broadcast)

    def expire(self, resource: str = SERVICE_ACCOUNTS) -> None:
        """Compact the history: open watches get a 410 ERROR event, and so do resumed ones."""
        self.compacted[resource] = self.revision
        self.history[resource] = []
        event = _line(
            {"type": "ERROR", "object": _status(410, "Expired", "too old resource version")}
        )
        for watch in self._open(resource):
            watch.queue.put_nowait(("line", event))
            watch.queue.put_nowait(("end", b""))

    # scripting the open watches -----------------------------------------------------------------

    def _open(self, resource: str) -> list[_Watch]:
        return [w for w in self._watches if w.resource == resource]

    def _push(self, resource: str, obj: dict[str, Any], line: bytes) -> None:
        for watch in self._open(resource):
            if watch.accepts(obj):
                watch.queue.put_nowait(("line", line))

    def watching(self, resource: str = SERVICE_ACCOUNTS) -> int:
        """How many watches of `resource` are open now."""
        return len(self._open(resource))

    def watch_open(self, number: int, resource: str = SERVICE_ACCOUNTS) -> bool:
        """Whether the `number`-th watch request of `resource` (1-based) is open now."""
        return any(w.number == number for w in self._open(resource))

    def send_raw(
        self, line: bytes, resource: str = SERVICE_ACCOUNTS, *, newline: bool = True
    ) -> None:
        """Write `line` as is, as one chunk, to every open watch of `resource`.

        A newline is added unless `newline` is false (a line split across chunks).
        """
        data = line.rstrip(b"\n") + b"\n" if newline else line
        for watch in self._open(resource):
            watch.queue.put_nowait(("line", data))

    def send(self, event: dict[str, Any], resource: str = SERVICE_ACCOUNTS) -> None:
        self.send_raw(_line(event), resource)

    def bookmark(self, resource: str = SERVICE_ACCOUNTS) -> str:
        """A BOOKMARK at a newer resourceVersion (other objects in the cluster changed)."""
        version = self._bump()
        kinds = {SERVICE_ACCOUNTS: "ServiceAccount", CONFIG_MAPS: "ConfigMap"}
        self.send(
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": kinds[resource],
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": version},
                },
            },
            resource,
        )
        return version

    def end_watches(self, resource: str | None = None) -> None:
        """End open watches cleanly, as the API server does when timeoutSeconds is up."""
        for watch in self._watches:
            if resource is None or watch.resource == resource:
                watch.queue.put_nowait(("end", b""))

    def disconnect(self, resource: str | None = None) -> None:
        """Drop open watch connections abruptly, in the middle of the chunked stream."""
        for watch in self._watches:
            if resource is None or watch.resource == resource:
                watch.queue.put_nowait(("abort", b""))

    # assertions ---------------------------------------------------------------------------------

    def recorded(self, kind: str, resource: str = SERVICE_ACCOUNTS) -> list[Recorded]:
        return [r for r in self.requests if r.kind == kind and r.resource == resource]

    # handlers -----------------------------------------------------------------------------------

    def _record(self, kind: str, resource: str, request: web.Request) -> None:
        self.requests.append(
            Recorded(
                kind,
                resource,
                request.path,
                dict(request.query),
                time.monotonic(),
                request.headers.get("Authorization", ""),
            )
        )

    async def _service_accounts(self, request: web.Request) -> web.StreamResponse:
        return await self._list_or_watch(request, SERVICE_ACCOUNTS, lambda _: True)

    async def _config_maps(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        selector = request.query.get("fieldSelector", "")
        wanted = selector.removeprefix("metadata.name=") if selector else None

        def accepts(obj: dict[str, Any]) -> bool:
            metadata = obj["metadata"]
            return metadata.get("namespace") == namespace and (
                wanted is None or metadata.get("name") == wanted
            )

        return await self._list_or_watch(request, CONFIG_MAPS, accepts)

    async def _list_or_watch(
        self, request: web.Request, resource: str, accepts: Filter
    ) -> web.StreamResponse:
        if request.query.get("watch") in ("1", "true"):
            self._record("watch", resource, request)
            return await self._watch(request, resource, accepts)
        self._record("list", resource, request)
        if self.list_delay:
            await asyncio.sleep(self.list_delay)
        failure = self.list_failures.get(resource)
        if failure is None and "continue" in request.query and self.page_failures:
            failure = self.page_failures.pop(0)
        if failure is not None:
            return web.json_response(
                _status(failure, "InternalError", "scripted list failure"), status=failure
            )
        return self._list(request, resource, accepts)

    def _list(self, request: web.Request, resource: str, accepts: Filter) -> web.Response:
        limit = int(request.query.get("limit") or 0)
        token = request.query.get("continue", "")
        if token:
            version, _, start_text = token.partition(":")
            start = int(start_text)
        else:
            version, start = str(self.revision), 0
        revision, every = self._sorted.get(resource, (-1, []))
        if revision != self.revision:
            every = sorted(self.objects[resource])
            self._sorted[resource] = (self.revision, every)
        objects = self.objects[resource]
        keys = [k for k in every if accepts(objects[k])] if resource != SERVICE_ACCOUNTS else every
        end = start + limit if limit else len(keys)
        items = [self.objects[resource][k] for k in keys[start:end]]
        metadata: dict[str, Any] = {"resourceVersion": version}
        if end < len(keys):
            metadata["continue"] = f"{version}:{end}"
            metadata["remainingItemCount"] = len(keys) - end
        kind = {SERVICE_ACCOUNTS: "ServiceAccountList", CONFIG_MAPS: "ConfigMapList"}[resource]
        body = {"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": items}
        return web.Response(
            body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
        )

    async def _watch(
        self, request: web.Request, resource: str, accepts: Filter
    ) -> web.StreamResponse:
        seconds = float(request.query.get("timeoutSeconds") or 1800)
        since = request.query.get("resourceVersion", "")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if self.closing:
            await response.write_eof()
            return response
        if since and int(since) < self.compacted[resource]:
            gone = _status(410, "Expired", f"too old resource version: {since}")
            await response.write(_line({"type": "ERROR", "object": gone}))
            await response.write_eof()
            return response
        # Registered and replayed from one snapshot: nothing is lost or sent twice.
        watch = _Watch(len(self.recorded("watch", resource)), resource, accepts, asyncio.Queue())
        self._watches.append(watch)
        missed = [
            _line({"type": kind, "object": obj})
            for version, kind, obj in self.history[resource]
            if (not since or version > int(since)) and accepts(obj)
        ]
        aborted = False
        try:
            with contextlib.suppress(ConnectionError):  # the client went away
                aborted = await self._stream(response, watch, missed, seconds)
        finally:
            self._watches.remove(watch)
        if aborted and request.transport is not None:
            # The connection drops in the middle of the chunked body. aiohttp's own write_eof
            # then fails with a ConnectionError, which it ignores quietly.
            request.transport.abort()
            return response
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    @staticmethod
    async def _stream(
        response: web.StreamResponse, watch: _Watch, missed: list[bytes], seconds: float
    ) -> bool:
        """Write the watch's lines until it ends; True when it is to be aborted."""
        deadline = asyncio.get_running_loop().time() + seconds
        for line in missed:
            await response.write(line)
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    what, line = await watch.queue.get()
            except TimeoutError:
                return False
            if what != "line":
                return what == "abort"
            await response.write(line)

    async def _requests(self, _: web.Request) -> web.Response:
        """The request log, for a benchmark in another process (monotonic clock, Linux-wide)."""
        return web.json_response([dataclasses.asdict(r) for r in self.requests])

    async def _get_service_account(self, request: web.Request) -> web.Response:
        self._record("get", SERVICE_ACCOUNTS, request)
        key = f"{request.match_info['namespace']}/{request.match_info['name']}"
        self.gets[key] += 1
        if self.get_delay:
            await asyncio.sleep(self.get_delay)
        status = self.get_status.get(key)
        if status is not None:
            return web.json_response(_status(status, "InternalError", "scripted"), status=status)
        obj = self.objects[SERVICE_ACCOUNTS].get(key) or self.get_only.get(key)
        if obj is None:
            name = request.match_info["name"]
            return web.json_response(
                _status(404, "NotFound", f'serviceaccounts "{name}" not found'), status=404
            )
        return web.json_response(obj)


# --- a process of its own, for the scale benchmark ----------------------------------------------


def realistic_service_accounts(count: int, annotated_every: int = 10) -> Iterator[dict[str, Any]]:
    """`count` ServiceAccounts over count/100 namespaces; one in `annotated_every` has a role."""
    namespaces = max(1, count // 100)
    for index in range(count):
        namespace = f"team-{index % namespaces:04d}"
        name = f"app-{index:06d}"
        role = (
            f"arn:aws:iam::111122223333:role/{namespace}-{name}"
            if index % annotated_every == 0
            else None
        )
        yield service_account(namespace, name, role_arn=role, noise=True)


async def _serve(arguments: argparse.Namespace) -> None:
    fake = FakeApi()
    fake.load_service_accounts(realistic_service_accounts(arguments.service_accounts))
    if arguments.config_map:
        fake.set_config_map(arguments.namespace, "{}", broadcast=False)
    await fake.start(arguments.port)
    print(json.dumps({"port": fake.port, "service_accounts": arguments.service_accounts}))
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    fake.end_watches()
    await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--service-accounts", type=int, default=10)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--namespace", default="eks")
    parser.add_argument("--config-map", action="store_true")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
