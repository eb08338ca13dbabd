"""A stop loses no admission (issue 19, item 1).

The API server keeps connections to the webhook alive and, like any Go client, does not retry
a POST it has written. So while the process stops, every request it has read must be answered,
each last answer on a connection must say `Connection: close` (the client then sends its next
request elsewhere), and no connection may be closed under a request the client is writing:
the listener stays open for --shutdown-delay while the endpoint removal reaches the API
servers, and then only connections their clients have left quiet are closed without an answer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from collections import Counter

import pytest

from tests.http.helpers import sample_review, wait_until_sync
from tests.http.processes import (
    Answer,
    Conversation,
    Launch,
    Parked,
    Webhook,
    refuses_connections,
    request_bytes,
)
from tests.support.reviews import make_pod, make_review

pytestmark = pytest.mark.timeout(60)

REVIEW = request_bytes(json.dumps(sample_review()).encode())


def _review(uid: str, account: str = "s3-reader") -> bytes:
    return request_bytes(json.dumps(make_review(make_pod(account), uid=uid)).encode())


def test_a_kept_alive_connection_in_use_is_answered_to_the_end(launch: Launch):
    """A client that goes on using its keep-alive connection through SIGTERM: every request it
    writes is answered; the first one after the delay says `Connection: close`."""
    webhook = launch("--shutdown-delay=1s")
    answers: list[Answer] = []
    with Conversation(webhook) as conversation:
        assert conversation.exchange(REVIEW).status == 200
        webhook.proc.send_signal(signal.SIGTERM)
        while not (answers and answers[-1].closes):
            answers.append(conversation.exchange(REVIEW))  # EOFError if a request is cut
            time.sleep(0.1)

    assert all(answer.status == 200 for answer in answers)
    assert len(answers) >= 5  # through the whole delay
    assert [answer.closes for answer in answers].count(True) == 1
    assert webhook.proc.wait(timeout=10) == 0


def test_an_in_flight_request_is_answered_with_connection_close(launch: Launch):
    webhook = launch("--service-account-lookup-grace-period=2s", "--shutdown-delay=0s")
    with Conversation(webhook) as conversation:
        conversation.send(_review("in-flight", "not-in-the-file"))
        wait_until_sync(
            lambda: webhook.request("GET", "/healthz")[0] == 200, timeout=5, what="health"
        )
        time.sleep(0.2)  # the parked request is in its grace-period wait
        webhook.proc.send_signal(signal.SIGTERM)

        answer = conversation.answer()
        assert conversation.closed_by_server(within=5)

    assert answer.status == 200
    assert answer.json()["response"]["uid"] == "in-flight"
    assert answer.closes
    assert webhook.proc.wait(timeout=10) == 0


def test_requests_already_read_are_all_answered_the_last_with_connection_close(
    launch: Launch,
):
    """Two requests pipelined on one connection: the first waits, the second has been read."""
    webhook = launch("--service-account-lookup-grace-period=2s", "--shutdown-delay=0s")
    with Conversation(webhook) as conversation:
        conversation.send(_review("first", "not-in-the-file") + _review("second"))
        time.sleep(0.3)
        webhook.proc.send_signal(signal.SIGTERM)

        first, second = conversation.answer(), conversation.answer()

    assert [first.status, second.status] == [200, 200]
    assert first.json()["response"]["uid"] == "first"
    assert second.json()["response"]["uid"] == "second"
    assert (first.closes, second.closes) == (False, True)


def test_the_listener_stays_open_for_the_shutdown_delay_and_readyz_says_so(launch: Launch):
    webhook = launch("--shutdown-delay=2s")

    signalled = time.monotonic()
    webhook.proc.send_signal(signal.SIGTERM)
    webhook.wait_for_event("shutting_down")
    readyz = webhook.request("GET", "/readyz")
    with Conversation(webhook) as late:  # a client that still had the endpoint
        answer = late.exchange(REVIEW)
    wait_until_sync(lambda: refuses_connections(webhook.port), timeout=10, what="the close")
    closed_after = time.monotonic() - signalled

    assert readyz == (503, b"not ready: shutting down")
    assert answer.status == 200
    assert closed_after >= 2
    assert webhook.proc.wait(timeout=10) == 0
    events = webhook.events()
    assert events.index("shutting_down") < events.index("stopped")


def test_an_idle_connection_does_not_hold_up_the_exit(launch: Launch):
    webhook = launch("--shutdown-delay=1s")
    with Conversation(webhook) as idle:
        assert idle.exchange(REVIEW).status == 200
        signalled = time.monotonic()
        webhook.proc.send_signal(signal.SIGTERM)

        assert idle.closed_by_server(within=8)
        assert webhook.proc.wait(timeout=8) == 0
    assert time.monotonic() - signalled < 6  # the delay, then at once: not the 10 s drain


def test_sigint_skips_the_shutdown_delay(launch: Launch):
    webhook = launch("--shutdown-delay=30s")

    signalled = time.monotonic()
    webhook.proc.send_signal(signal.SIGINT)

    assert webhook.proc.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 10


def test_a_request_parked_through_the_delay_is_still_answered(launch: Launch):
    webhook = launch("--service-account-lookup-grace-period=3s", "--shutdown-delay=1s")
    with Parked(webhook, make_review(make_pod("not-in-the-file"), uid="parked")) as parked:
        webhook.proc.send_signal(signal.SIGTERM)
        status, answer = parked.answer()

    assert status == 200
    assert answer["response"]["uid"] == "parked"
    assert webhook.proc.wait(timeout=10) == 0


# --- under load -----------------------------------------------------------------------------


class GoLikeClient:
    """Keep-alive connections used the way Go's net/http Transport (the API server) uses them:
    the most recently used idle connection first; one the server has closed while it was idle
    is dropped before use (Go's read loop has seen the EOF); a new one is dialled when none is
    idle; a written POST is never retried, so a connection that closes before its answer
    loses the admission."""

    def __init__(self, webhook: Webhook) -> None:
        self.port = webhook.port
        self.context = ssl.create_default_context(cadata=webhook.ca.decode())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.outcomes: Counter[str] = Counter()
        self.lost_after_signal: list[float] = []
        self.closes = 0

    async def connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer = self.idle.pop()
            if not (reader.at_eof() or writer.is_closing()):
                return reader, writer
            writer.close()
        try:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, ssl=self.context), 5
            )
        except (OSError, TimeoutError):
            return None

    async def send(self, request: bytes, signalled: float | None) -> None:
        connection = await self.connection()
        if connection is None:
            self.outcomes["not sent: no connection"] += 1  # another endpoint's turn
            return
        reader, writer = connection
        try:
            writer.write(request)
            answer = await asyncio.wait_for(_read_answer(reader), 15)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            self.outcomes["lost"] += 1
            if signalled is not None:
                self.lost_after_signal.append(round(time.monotonic() - signalled, 3))
            writer.close()
            return
        self.outcomes[f"answered {answer.status}"] += 1
        if answer.closes:
            self.closes += 1
            writer.close()
        elif len(self.idle) >= 25:
            writer.close()
        else:
            self.idle.append((reader, writer))


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(lines[0].split(" ", 2)[1]), headers, body)


async def test_no_admission_is_lost_across_sigterm_under_fixed_rate_keep_alive_load(
    launch: Launch,
):
    rate, before = 150.0, 1.0
    webhook = launch("--shutdown-delay=1s")
    client = GoLikeClient(webhook)
    await asyncio.gather(*(client.send(REVIEW, None) for _ in range(8)))  # a warm pool
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    signalled: float | None = None
    sent = 0
    while webhook.proc.poll() is None and time.monotonic() - start < 30:
        due = start + sent / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if signalled is None and time.monotonic() - start >= before:
            webhook.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
        task = asyncio.create_task(client.send(REVIEW, signalled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks)

    assert webhook.proc.wait(timeout=10) == 0
    assert client.outcomes["lost"] == 0, (client.outcomes, client.lost_after_signal)
    answered = client.outcomes["answered 200"]
    assert answered >= rate * before  # the load was real
    assert client.closes > 0  # answers during the drain told the clients to go elsewhere
    assert webhook.events().count("admission") == answered
