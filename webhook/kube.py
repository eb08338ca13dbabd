"""The Kubernetes API: the only module that imports `kubernetes`.

The official client is used for what it does well (kubeconfig, in-cluster credentials, token
refresh, TLS) and bypassed for the rest: responses are read as raw JSON, because building its
model objects for 100,000 ServiceAccounts costs far more time and memory than the few fields
mutation needs.

The client is synchronous, so list/watch loops ("reflectors") run in threads and hand their
results to the event loop with `call_soon_threadsafe`; ServiceAccounts are parsed into store
entries in those threads too, so the admission path never waits behind a big list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from webhook.config import Config
from webhook.errors import ApiError, ConfigError, WatchExpired

__all__ = ["Api", "Listing", "Reflector", "client_configuration"]

log = structlog.get_logger("webhook.kube")

LIST_PAGE_SIZE = 500
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
FETCH_TIMEOUT = 1.0  # a live GET on the admission path: upstream's fallback timeout


def client_configuration(config: Config) -> Any:
    """Client settings like upstream's: --kubeconfig and/or --kube-api, else in-cluster.

    Unlike upstream, a KUBECONFIG environment variable is honoured when no flag is given.
    """
    # Imported here: the client takes 0.4 s to import and `mutate` never needs it.
    from kubernetes import client
    from kubernetes import config as kube_config

    settings = client.Configuration()
    path = config.kubeconfig or os.environ.get("KUBECONFIG", "")
    try:
        if path:
            kube_config.load_kube_config(config_file=path, client_configuration=settings)  # type: ignore[no-untyped-call]
        elif not config.kube_api:
            kube_config.load_incluster_config(client_configuration=settings)  # type: ignore[no-untyped-call]
    except (kube_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"Error creating config: {exc}") from None
    if config.kube_api:
        # Upstream gives the master URL priority over the kubeconfig's server. The client puts
        # the kubeconfig's server back whenever it refreshes a token, so re-apply it then too.
        settings.host = config.kube_api
        refresh: Any = getattr(settings, "refresh_api_key_hook", None)
        if refresh is not None:

            def refresh_keeping_host(current: Any) -> None:
                refresh(current)
                current.host = config.kube_api

            settings.refresh_api_key_hook = refresh_keeping_host  # type: ignore[assignment]
    settings.retries = 0  # reflectors and the fetcher retry themselves, with backoff and limits
    return settings


class Api:
    """Raw JSON GET, list and watch over the official client's connection pool."""

    def __init__(self, settings: Any) -> None:
        from kubernetes import client

        self._client = client.ApiClient(settings)
        self._watches: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _request(
        self,
        path: str,
        query: Mapping[str, str],
        timeout: tuple[float, float],
        *,
        method: str = "GET",
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        import urllib3

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        verb, url, headers, payload, post = self._client.param_serialize(
            method,
            path,
            query_params=list(query.items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            answer = self._client.call_api(
                verb, url, headers, payload, post, _request_timeout=timeout
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(0, str(exc)) from None
        response = answer.response
        if response.status >= 300:
            text = response.data.decode("utf-8", "replace")[:300]
            with contextlib.suppress(ValueError, AttributeError):
                text = json.loads(text).get("message", text)
            raise ApiError(response.status, text)
        return response

    def send(
        self, method: str, path: str, body: Any, *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """POST, PUT or PATCH a JSON body; the answer's object."""
        response = self._request(
            path, {}, (5.0, 10.0), method=method, body=body, content_type=content_type
        )
        return _json_object(response.data)

    def get(self, path: str, *, timeout: float = FETCH_TIMEOUT) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        try:
            response = self._request(path, {}, (timeout, timeout))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _json_object(response.data)

    def list_all(self, path: str, query: Mapping[str, str]) -> Listing:
        """Every item of a paginated list, read page by page as it is iterated."""
        return Listing(self, path, query)

    def page(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        return _json_object(self._request(path, query, (10.0, 60.0)).data)

    def watch(
        self, path: str, query: Mapping[str, str], *, seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events until the server ends the watch (after about `seconds`)."""
        params = {
            **query,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        import urllib3

        response = self._request(path, params, (10.0, seconds + 30.0))
        with self._lock:
            if self._closed:  # closed while the watch was being opened
                response.release_conn()
                raise ApiError(0, "the API client is closed")
            self._watches.add(response)
        buffer = b""
        try:
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(line)
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # a broken or stalled stream
            raise ApiError(0, f"watch interrupted: {exc}") from None
        finally:
            with self._lock:
                self._watches.discard(response)
            response.release_conn()

    def close_watches(self) -> None:
        """End every open watch now and refuse new ones (from any thread): their readers see
        an error and stop."""
        with self._lock:
            self._closed = True
            open_watches = list(self._watches)
        for response in open_watches:
            with contextlib.suppress(Exception):  # already closed by its reader
                response.shutdown()


class Listing:
    """The items of a paginated list, one page in memory at a time (100,000 parsed
    ServiceAccounts would take 400 MiB); `resource_version` is known once it is exhausted."""

    def __init__(self, api: Api, path: str, query: Mapping[str, str]) -> None:
        self._api, self._path, self._query = api, path, query
        self.resource_version = ""
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        token = ""
        while True:
            params = {**self._query, "limit": str(LIST_PAGE_SIZE)}
            if token:
                params["continue"] = token
            page = self._api.page(self._path, params)
            found = page.get("items") or []
            if not isinstance(found, list):
                raise ApiError(200, "list answer without an items list")
            self.count += len(found)
            yield from found
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or ""
            del page, found
            if not token:
                self.resource_version = str(metadata.get("resourceVersion") or "")
                return


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ApiError(200, f"answer is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(200, "answer is not a JSON object")
    return value


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {"type": "MALFORMED", "object": line[:200].decode("utf-8", "replace")}
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        return {"type": "MALFORMED", "object": str(event)[:200]}
    return event


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


@dataclass(slots=True, kw_only=True)
class Reflector:
    """List, then watch from the list's resourceVersion, forever; in its own thread.

    410 Gone relists; any other failure reconnects after a capped exponential backoff with
    jitter. `on_list` gets every item of a (re)list, `on_event` each watch event.
    """

    api: Api
    path: str
    query: Mapping[str, str]
    on_list: Callable[[Iterable[Any]], None]
    on_event: Callable[[str, dict[str, Any]], None]
    watch_seconds: int
    name: str
    stop: threading.Event
    on_error: Callable[[str], None] | None = None
    healthy: bool = False
    """The current watch delivered something: a later failure starts a fresh backoff."""

    def run(self) -> None:
        backoff = BACKOFF_START
        while not self.stop.is_set():
            self.healthy = False
            try:
                listing = self.api.list_all(self.path, self.query)
                self.on_list(listing)  # consumes it page by page; nothing is kept here
                log.info("listed", source=self.name, items=listing.count)
                self._watch(listing.resource_version)
                continue
            except WatchExpired:
                # Routine, but a watch cache that keeps answering 410 must not make us relist a
                # big cluster in a loop: back off like any other failure (client-go does too).
                log.info("watch_expired", source=self.name, action="relisting")
            except (ApiError, OSError, ValueError) as exc:
                if self.stop.is_set():
                    return
                log.warning("api_error", source=self.name, error=str(exc))
                if self.on_error is not None:
                    self.on_error(self.name)
            except Exception:  # a bug must not leave the cache frozen: log it and start over
                log.exception("reflector_error", source=self.name)
                if self.on_error is not None:
                    self.on_error(self.name)
            if self.healthy:
                backoff = BACKOFF_START  # the watch worked for a while: this is a new problem
            self.stop.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _watch(self, version: str) -> None:
        while not self.stop.is_set():
            for event in self.api.watch(
                self.path, {**self.query, "resourceVersion": version}, seconds=self.watch_seconds
            ):
                if self.stop.is_set():
                    return
                kind, obj = event.get("type"), event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message", obj)))
                if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    log.warning("malformed_event", source=self.name, detail=str(obj)[:200])
                    continue
                self.healthy = True
                version = str(_metadata(obj).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self.on_event(kind, obj)
            self.healthy = True  # the server ended the watch window normally


# --- EKS Pod Identity: TokenReview, Pods and PodIdentityAssociations -------------------------

POD_IDENTITY_GROUP = "podidentity.pod-identity-webhook.io"
POD_IDENTITY_VERSION = "v1alpha1"
ASSOCIATIONS_PATH = f"/apis/{POD_IDENTITY_GROUP}/{POD_IDENTITY_VERSION}/podidentityassociations"


def connect(kubeconfig: str = "", kube_api: str = "", *, connections: int = 32) -> Api:
    """An Api for --kubeconfig/--kube-api, or in-cluster credentials when neither is given;
    `connections` pooled connections for callers that run many requests at once."""
    settings = client_configuration(Config(kubeconfig=kubeconfig, kube_api=kube_api))
    settings.connection_pool_maxsize = connections
    return Api(settings)


def token_review(api: Api, token: str, audiences: Iterable[str]) -> dict[str, Any]:
    """The status of a TokenReview of `token` for `audiences` (the token is never logged)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": list(audiences)},
    }
    answer = api.send("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
    status = answer.get("status")
    return status if isinstance(status, dict) else {}


def get_pod(api: Api, namespace: str, name: str) -> dict[str, Any] | None:
    return api.get(f"/api/v1/namespaces/{namespace}/pods/{name}", timeout=5.0)


def patch_association_status(
    api: Api, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    """Merge `status` into a PodIdentityAssociation's status subresource."""
    group = f"/apis/{POD_IDENTITY_GROUP}/{POD_IDENTITY_VERSION}"
    path = f"{group}/namespaces/{namespace}/podidentityassociations/{name}/status"
    api.send("PATCH", path, {"status": dict(status)}, content_type="application/merge-patch+json")


def association_reflector(
    api: Api,
    loop: asyncio.AbstractEventLoop,
    stop: threading.Event,
    *,
    on_list: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    watch_seconds: int = 60,
    on_error: Callable[[str], None] | None = None,
) -> threading.Thread:
    """List and watch every PodIdentityAssociation in a thread; the callbacks run on `loop`."""

    def call(function: Callable[..., None], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop is closed: shutting down
            stop.set()

    def listed(items: Iterable[Any]) -> None:
        call(on_list, [item for item in items if isinstance(item, dict)])

    def changed(kind: str, obj: dict[str, Any]) -> None:
        call(on_event, kind, obj)

    reflector = Reflector(
        api=api,
        path=ASSOCIATIONS_PATH,
        query={},
        on_list=listed,
        on_event=changed,
        watch_seconds=watch_seconds,
        name="podidentityassociations",
        stop=stop,
        on_error=on_error,
    )
    thread = threading.Thread(target=reflector.run, name="reflector-associations", daemon=True)
    thread.start()
    return thread
