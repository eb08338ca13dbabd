"""What a connection may cost (issue 19, item 5), over real TLS sockets.

Slow, silent and stalled clients are cut after their timeout; at --max-connections a new
client still gets its answer, by taking the place of an idle or stuck connection, or by
waiting in the listen backlog while every connection is busy; the backlog is the flag's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.http.helpers import sample_review
from tests.http.processes import Conversation, Launch, Webhook, metric, request_bytes
from tests.support.reviews import make_pod, make_review

pytestmark = pytest.mark.timeout(90)

REVIEW = request_bytes(json.dumps(sample_review()).encode())
UID = sample_review()["request"]["uid"]


def _closed(webhook: Webhook, reason: str) -> float:
    return metric(webhook, "pod_identity_webhook_connections_closed_total", {"reason": reason})


def _seconds_until_closed(conversation: Conversation, *, trickle: bytes = b"") -> float:
    """Seconds until the server ends the connection, sending `trickle` every 0.2 s meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < 30:
        if trickle:
            try:
                conversation.send(trickle)
            except OSError:
                break
        if conversation.closed_by_server(within=0.2):
            break
    return time.monotonic() - started


def test_slowloris_headers_are_cut_after_the_header_timeout(launch: Launch):
    """A client that sends a header line every 0.2 s, for ever, is closed once its headers
    have taken --header-timeout, however lively it looks."""
    webhook = launch("--header-timeout=1s")
    with Conversation(webhook) as slow:
        slow.send(b"POST /mutate HTTP/1.1\r\nHost: webhook\r\n")
        seconds = _seconds_until_closed(slow, trickle=b"X-Slow: 1\r\n")

    assert 0.9 <= seconds < 5, seconds
    assert _closed(webhook, "header_timeout") == 1
    assert webhook.mutate(sample_review())[0] == 200


def test_a_connection_that_never_finishes_its_tls_handshake_is_closed(launch: Launch):
    webhook = launch("--header-timeout=1s")
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
        started = time.monotonic()
        end = raw.recv(1)
        seconds = time.monotonic() - started

    assert end == b""
    assert 0.9 <= seconds < 5, seconds


def test_a_connection_that_sends_nothing_after_its_handshake_is_closed_when_idle(
    launch: Launch,
):
    webhook = launch("--idle-timeout=1s")
    with Conversation(webhook) as silent:
        seconds = _seconds_until_closed(silent)

    assert 0.9 <= seconds < 5, seconds


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(launch: Launch):
    webhook = launch("--idle-timeout=1s")
    with Conversation(webhook) as idle:
        answer = idle.exchange(REVIEW)
        seconds = _seconds_until_closed(idle)

    assert answer.status == 200
    assert not answer.closes
    assert 0.9 <= seconds < 5, seconds


def test_a_keep_alive_connection_in_use_is_not_closed_by_the_idle_timeout(launch: Launch):
    webhook = launch("--idle-timeout=1s")
    with Conversation(webhook) as busy:
        answers = []
        for _ in range(8):  # 2.4 s of use, never 1 s idle
            answers.append(busy.exchange(REVIEW))
            time.sleep(0.3)

    assert [a.status for a in answers] == [200] * 8
    assert not any(a.closes for a in answers)


def test_a_stalled_body_gets_a_json_408_and_its_connection_is_closed(launch: Launch):
    """Content-Length promises more than comes: answered within --body-timeout, and the
    connection is not kept, since the rest of the body might still arrive."""
    body = json.dumps(sample_review()).encode()
    webhook = launch("--body-timeout=1s")
    with Conversation(webhook) as stalled:
        stalled.send(request_bytes(body[:100], length=len(body)))
        started = time.monotonic()
        answer = stalled.answer()
        seconds = time.monotonic() - started
        closed = stalled.closed_by_server(within=5)

    assert answer.status == 408
    assert "did not arrive within 1 s" in answer.json()["error"]
    assert answer.closes
    assert closed
    assert 0.9 <= seconds < 5, seconds
    assert metric(webhook, "http_request_count", {"code": "500"}) == 0


# --- at --max-connections -----------------------------------------------------------------------


def test_at_the_limit_the_longest_idle_connection_gives_way_to_a_new_client(launch: Launch):
    webhook = launch("--max-connections=8")
    with ExitStack() as stack:
        held = [stack.enter_context(Conversation(webhook)) for _ in range(8)]
        for conversation in held:
            assert conversation.exchange(REVIEW).status == 200
            time.sleep(0.05)
        with Conversation(webhook) as newcomer:
            answer = newcomer.exchange(REVIEW)
        oldest_closed = held[0].closed_by_server(within=5)
        newest_open = not held[-1].closed_by_server(within=0.5)

    assert answer.status == 200
    assert answer.json()["response"]["uid"] == UID
    assert oldest_closed
    assert newest_open
    assert _closed(webhook, "evicted") >= 1


def test_at_the_limit_connections_stuck_in_their_headers_give_way(launch: Launch):
    webhook = launch("--max-connections=8", "--header-timeout=60s")
    with ExitStack() as stack:
        for _ in range(8):
            stuck = stack.enter_context(Conversation(webhook))
            stuck.send(b"POST /mutate HTTP/1.1\r\nHost: web")
        time.sleep(1.5)  # stuck for longer than the second a working client needs
        started = time.monotonic()
        with Conversation(webhook) as newcomer:
            answer = newcomer.exchange(REVIEW)
        seconds = time.monotonic() - started

    assert answer.status == 200
    assert seconds < 5, seconds
    assert _closed(webhook, "evicted") >= 1


def test_overloaded_the_slow_headers_give_way_and_a_complete_request_is_not_cut(launch: Launch):
    """The overload of the soak, made exact: the event loop stands still for over a second
    (SIGSTOP here; a busy loop in the field) while one connection's request, begun before,
    is completed and another connection is slow in its headers, and a new client arrives.
    When the loop runs again, both connections started their request more than a second ago
    and no handler runs yet: the new client takes the place of the slow one (evicted), and the
    complete request, still waiting for its handler, is answered."""
    webhook = launch("--max-connections=2", "--header-timeout=60s")
    request_line, _, rest = REVIEW.partition(b"\r\n")
    with ExitStack() as stack:
        complete = stack.enter_context(Conversation(webhook))
        complete.send(request_line)  # read now: this request started first
        time.sleep(0.2)
        slow = stack.enter_context(Conversation(webhook))
        slow.send(b"POST /mutate HTTP/1.1\r\nHost: web")
        time.sleep(0.2)
        pool = stack.enter_context(ThreadPoolExecutor(1))
        os.kill(webhook.proc.pid, signal.SIGSTOP)
        try:
            dialling = pool.submit(Conversation, webhook, 20)  # waits in the listen backlog
            time.sleep(0.3)
            complete.send(b"\r\n" + rest)  # so the loop reads it after the new client's connect
            time.sleep(1.2)
        finally:
            os.kill(webhook.proc.pid, signal.SIGCONT)
        newcomer = stack.enter_context(dialling.result(timeout=20))
        answer = newcomer.exchange(REVIEW)
        waited = complete.answer()
        slow_closed = slow.closed_by_server(within=5)

    assert answer.status == 200
    assert waited.status == 200
    assert waited.json()["response"]["uid"] == UID
    assert slow_closed
    assert _closed(webhook, "evicted") == 1
    assert _closed(webhook, "header_timeout") == 0


def test_many_silent_connections_do_not_keep_a_new_client_out(launch: Launch):
    """Four times --max-connections of port-scan-like connections that never send a byte
    (the issue's 20,000 held connections, at test scale): a new client is answered."""
    webhook = launch("--max-connections=50", "--header-timeout=60s")
    with ExitStack() as stack:
        for _ in range(200):
            stack.enter_context(socket.create_connection(("127.0.0.1", webhook.port), timeout=5))
        time.sleep(1.5)
        started = time.monotonic()
        with Conversation(webhook, timeout=20) as newcomer:
            answer = newcomer.exchange(REVIEW)
        seconds = time.monotonic() - started
        opened = metric(webhook, "pod_identity_webhook_open_connections")

    assert answer.status == 200
    assert seconds < 10, seconds
    assert opened <= 50


def test_at_the_limit_with_every_connection_busy_a_new_client_waits_its_turn(launch: Launch):
    """Backpressure: nothing can give way, so the newcomer waits in the listen backlog (its
    handshake is not even started) and is answered once a busy connection has finished."""
    missing = request_bytes(json.dumps(make_review(make_pod("not-in-the-file"))).encode())
    webhook = launch("--max-connections=4", "--service-account-lookup-grace-period=2s")
    with ExitStack() as stack:
        busy = [stack.enter_context(Conversation(webhook)) for _ in range(4)]
        for conversation in busy:
            conversation.send(missing)  # each waits out the 2 s grace period
        time.sleep(0.3)
        started = time.monotonic()
        with Conversation(webhook, timeout=20) as newcomer:
            answer = newcomer.exchange(REVIEW)
        waited = time.monotonic() - started
        parked = [conversation.answer() for conversation in busy]

    assert answer.status == 200
    assert waited >= 1.0, waited  # held back until the grace periods ended
    assert [a.status for a in parked] == [200] * 4


def test_the_listen_backlog_is_the_flags(launch: Launch):
    """Read with iproute2's ss (CI installs it: make netns-tools)."""
    webhook = launch("--listen-backlog=77")
    listing = subprocess.run(
        ["ss", "-Hltn", f"sport = :{webhook.port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout

    # A listening socket's Send-Q column is its backlog (below net.core.somaxconn).
    assert {line.split()[2] for line in listing.splitlines()} == {"77"}
