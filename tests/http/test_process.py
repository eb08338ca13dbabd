"""The real command line: `python -m webhook` as a Deployment runs it.

Each test starts its own process on free ports, talks to it over TLS on 127.0.0.1 only, and
kills it in a `finally`. Waits are polls with deadlines; the only fixed sleeps are a few
hundredths of a second.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.http.conftest import Authority
from tests.http.helpers import JSON, metric_value, sample_review, wait_until_sync
from tests.http.processes import (
    Files,
    Launch,
    Parked,
    Webhook,
    argv,
    metric,
    refuses_connections,
)
from tests.support.ports import free_port
from tests.support.reviews import ROLE, env_of, make_pod, make_review, patched_pod
from webhook.certificates.issuing import certificate_expiry, certificate_serial, make_serving_cert

pytestmark = pytest.mark.timeout(30)

LATE_ACCOUNT = f"""\
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: late
  namespace: default
  annotations:
    eks.amazonaws.com/role-arn: {ROLE}
"""


# --- start-up and serving -----------------------------------------------------------------------


def test_startup_logs_json_lines_and_serves_mutate(launch: Launch, files: Files):
    webhook = launch()

    status, answer = webhook.mutate(sample_review())

    assert status == 200
    assert answer["response"]["patchType"] == "JSONPatch"
    pod = patched_pod(sample_review(), answer)
    assert env_of(pod["spec"]["containers"][0])["AWS_ROLE_ARN"] == ROLE
    logs = webhook.logs()
    assert all({"event", "level", "timestamp"} <= set(entry) for entry in logs)
    (started,) = [entry for entry in logs if entry["event"] == "started"]
    assert started["port"] == webhook.port
    assert started["metrics_port"] == webhook.metrics_port
    assert started["certificate_serial"] == f"{certificate_serial(files.cert.read_bytes()):x}"
    assert any(entry["event"] == "source_loaded" for entry in logs)
    wait_until_sync(lambda: "admission" in webhook.events(), timeout=5, what="admission log")
    (admission,) = [entry for entry in webhook.logs() if entry["event"] == "admission"]
    assert admission["uid"] == sample_review()["request"]["uid"]
    assert admission["outcome"] == "mutated"
    assert webhook.stderr.read_text() == ""


def test_healthz_is_on_the_tls_port_and_metrics_on_the_metrics_port(launch: Launch, files: Files):
    webhook = launch()
    webhook.mutate(sample_review())

    assert webhook.request("GET", "/healthz") == (200, b"ok")
    status, text = webhook.metrics()
    assert status == 200
    labels = {"verb": "POST", "path": "/mutate", "code": "200"}
    assert metric_value(text, "http_request_count", labels) == 1
    assert metric_value(text, "pod_identity_webhook_pod_count", {"method": "sts_web_identity"}) == 1
    assert metric_value(text, "pod_identity_webhook_used") == 1
    assert metric_value(text, "process_start_time_seconds") is not None
    expiry = certificate_expiry(files.cert.read_bytes()).timestamp()
    assert metric_value(text, "pod_identity_webhook_certificate_expiry_timestamp_seconds") == expiry
    assert webhook.metrics("/healthz")[0] == 404
    assert webhook.metrics("/debug/alpha/cache")[0] == 404


def test_debugging_handlers_flag_serves_the_cache_on_the_metrics_port(launch: Launch):
    webhook = launch("--enable-debugging-handlers")

    status, text = webhook.metrics("/debug/alpha/cache")

    assert status == 200
    assert set(json.loads(text)) == {"default/default", "default/s3-reader"}


def test_no_private_key_ever_reaches_the_output(launch: Launch, files: Files):
    webhook = launch()
    webhook.mutate(sample_review())
    webhook.request("POST", "/mutate", b"{broken", JSON)
    webhook.proc.send_signal(signal.SIGTERM)
    webhook.proc.wait(timeout=10)

    output = webhook.output()
    key_lines = files.key.read_text().splitlines()[1:-1]
    assert "PRIVATE KEY" not in output
    assert not any(line in output for line in key_lines)


def test_the_request_body_never_reaches_the_log_even_when_parsing_breaks(launch: Launch):
    secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXNlcnZpY2UtYWNjb3VudC10b2tlbg.c2ln"
    nesting = "[" * 100_000 + "]" * 100_000
    body = f'{{"token": "{secret}", "nested": {nesting}}}'.encode()
    webhook = launch()

    _, answer = webhook.request("POST", "/mutate", body, JSON)
    wait_until_sync(
        lambda: bool({"admission_rejected", "internal_error"} & set(webhook.events())),
        timeout=5,
        what="the request's log line",
    )

    assert secret.encode() not in answer
    assert secret not in webhook.output()


def test_a_service_account_added_to_the_file_while_a_request_waits_is_used(
    launch: Launch, files: Files
):
    webhook = launch("--service-account-lookup-grace-period=5s")
    review = make_review(make_pod("late"))
    with Parked(webhook, review) as parked:
        temp = files.service_accounts.with_suffix(".tmp")
        temp.write_text(files.service_accounts.read_text() + LATE_ACCOUNT)
        temp.replace(files.service_accounts)
        status, answer = parked.answer()

    assert status == 200
    assert time.monotonic() - parked.sent < 4.5  # well before the 5 s grace period ran out
    assert env_of(patched_pod(review, answer)["spec"]["containers"][0])["AWS_ROLE_ARN"] == ROLE


def _handshake(webhook: Webhook, maximum: ssl.TLSVersion | None = None) -> tuple[str, str]:
    """(protocol, cipher) a client negotiates with the running webhook."""
    context = ssl.create_default_context(cadata=webhook.ca.decode())
    if maximum is not None:
        context.maximum_version = maximum
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[1], cipher[0]


def test_tls_min_version_flag_refuses_tls_1_2_clients(launch: Launch):
    webhook = launch("--tls-min-version=VersionTLS13")

    with pytest.raises(ssl.SSLError):
        _handshake(webhook, ssl.TLSVersion.TLSv1_2)
    assert _handshake(webhook)[0] == "TLSv1.3"


def test_tls_cipher_suites_flag_sets_what_a_tls_1_2_client_negotiates(launch: Launch):
    webhook = launch("--tls-cipher-suites= TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ,")

    assert _handshake(webhook, ssl.TLSVersion.TLSv1_2) == (
        "TLSv1.2",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    )


# --- graceful shutdown --------------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_request_finish_then_exits_zero(launch: Launch):
    webhook = launch("--service-account-lookup-grace-period=3s", "--shutdown-delay=0s")
    with Parked(webhook, make_review(make_pod("not-in-the-file"), uid="in-flight")) as parked:
        webhook.proc.send_signal(signal.SIGTERM)
        wait_until_sync(
            lambda: refuses_connections(webhook.port), timeout=2, what="the listener to close"
        )
        status, answer = parked.answer()
        returncode = webhook.proc.wait(timeout=5)

    assert status == 200
    assert answer["response"]["uid"] == "in-flight"
    assert answer["response"]["allowed"] is True
    assert returncode == 0
    assert time.monotonic() - parked.sent < 3 + 3  # the grace period plus a prompt exit
    events = webhook.events()
    assert events.index("shutting_down") < events.index("admission") < events.index("stopped")
    assert webhook.stderr.read_text() == ""


def test_sigterm_with_nothing_in_flight_exits_zero_at_once(launch: Launch):
    webhook = launch("--shutdown-delay=0s")

    sent = time.monotonic()
    webhook.proc.send_signal(signal.SIGTERM)
    returncode = webhook.proc.wait(timeout=5)

    assert returncode == 0
    assert time.monotonic() - sent < 2
    assert webhook.events()[-1] == "stopped"


def test_sigint_is_a_graceful_stop_too(launch: Launch):
    webhook = launch()

    webhook.proc.send_signal(signal.SIGINT)

    assert webhook.proc.wait(timeout=5) == 0
    assert webhook.stderr.read_text() == ""


def test_a_second_sigterm_during_shutdown_exits_at_once_with_a_failure(launch: Launch):
    webhook = launch("--service-account-lookup-grace-period=10s")
    with Parked(webhook, make_review(make_pod("not-in-the-file"))):
        webhook.proc.send_signal(signal.SIGTERM)
        webhook.wait_for_event("shutting_down")
        assert webhook.proc.poll() is None  # still waiting for the parked request
        second = time.monotonic()
        webhook.proc.send_signal(signal.SIGTERM)
        returncode = webhook.proc.wait(timeout=3)

    assert returncode != 0
    assert time.monotonic() - second < 2
    assert "second_signal" in webhook.events()


# --- start-up errors ----------------------------------------------------------------------------


def _run(files: Files, *extra: str, **replace: str) -> subprocess.CompletedProcess[str]:
    command = argv(files, free_port(), free_port(), *extra)
    for flag, value in replace.items():
        name = "--" + flag.replace("_", "-")
        command = [f"{name}={value}" if arg.startswith(f"{name}=") else arg for arg in command]
    return subprocess.run(command, capture_output=True, text=True, timeout=15, check=False)


def test_a_certificate_the_service_name_does_not_match_is_warned_about(
    launch: Launch, files: Files, authority: Authority
):
    """A release renamed after its certificate was made would be refused by the API server."""
    webhook = launch("--service-name=hook", "--namespace=team")
    (warning,) = [e for e in webhook.logs() if e["event"] == "certificate_name_mismatch"]
    assert (warning["level"], warning["expected"]) == ("warning", "hook.team.svc")
    assert warning["names"] == ["localhost", "127.0.0.1"]

    cert, key = make_serving_cert(
        authority.cert, authority.key, dns_names=["*.team.svc"], ip_addresses=["127.0.0.1"]
    )
    files.cert.write_bytes(cert)
    files.key.write_bytes(key)
    webhook = launch("--service-name=hook", "--namespace=team")
    assert "certificate_name_mismatch" not in webhook.events()


def test_upstreams_flag_adjustments_are_said_at_start_up(launch: Launch):
    webhook = launch("--token-expiration=10", "--sts-regional-endpoint", "false")
    logged = {e["event"]: e for e in webhook.logs() if e["level"] == "warning"}
    assert "raised to 600" in logged["token_expiration_raised"]["detail"]
    assert "['false']" in logged["arguments_ignored"]["detail"]


def _one_line_error(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pod-identity-webhook: ")
    return lines[0]


def test_a_missing_certificate_file_is_a_one_line_error(files: Files, tmp_path: Path):
    missing = tmp_path / "nowhere" / "tls.crt"

    line = _one_line_error(_run(files, tls_cert=str(missing)))

    assert str(missing) in line


def test_a_garbage_key_file_is_a_one_line_error(files: Files):
    files.key.write_text("this is not a key\n")

    line = _one_line_error(_run(files))

    assert str(files.key) in line


def test_an_unsupported_tls_min_version_is_upstreams_one_line_error(files: Files):
    line = _one_line_error(_run(files, "--tls-min-version=1.4"))

    assert line.endswith("Invalid value for tls-min-version unsupported version 1.4")


def test_an_unknown_cipher_suite_is_upstreams_one_line_error(files: Files):
    line = _one_line_error(
        _run(files, "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_BOGUS")
    )

    assert line.endswith("invalid tls-cipher-suites: unsupported cipher suite: TLS_BOGUS")


def test_an_unknown_flag_is_a_one_line_error(files: Files):
    line = _one_line_error(_run(files, "--no-such-flag=1"))

    assert "--no-such-flag" in line


def test_in_cluster_true_is_refused_with_a_pointer_to_the_alternatives(files: Files):
    line = _one_line_error(_run(files, in_cluster="true"))

    assert "--in-cluster=false" in line


def test_a_service_accounts_file_that_is_not_yaml_is_a_one_line_error(files: Files):
    files.service_accounts.write_text("apiVersion: v1\nkind: [ServiceAccount\n  metadata: {\n")

    line = _one_line_error(_run(files))

    assert str(files.service_accounts) in line


def test_a_port_already_in_use_is_a_one_line_error(files: Files):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("0.0.0.0", 0))  # noqa: S104 - the webhook binds every interface
        busy.listen()
        port = busy.getsockname()[1]

        result = _run(files, port=str(port))

    line = _one_line_error(result, status=1)
    assert str(port) in line


# --- start-up checks (issue 19, item 9) ---------------------------------------------------------


def test_an_empty_annotation_prefix_is_a_one_line_error(files: Files):
    line = _one_line_error(_run(files, "--annotation-prefix="))

    assert "--annotation-prefix" in line
    assert "must not be empty" in line


@pytest.mark.parametrize("region", ["us west-2", "us-west-2/", "eu-west-1,us-east-1"])
def test_a_region_that_is_not_a_region_name_is_a_one_line_error(files: Files, region: str):
    line = _one_line_error(_run(files, f"--aws-default-region={region}"))

    assert "--aws-default-region" in line
    assert "not a region name" in line


def _issue_at(authority: Authority, files: Files, *, now: datetime, days: int) -> None:
    cert, key = make_serving_cert(
        authority.cert,
        authority.key,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        days=days,
        now=now,
    )
    files.cert.write_bytes(cert)
    files.key.write_bytes(key)


def _problems(webhook: Webhook) -> dict[str, float]:
    return {
        problem: metric(webhook, "pod_identity_webhook_certificate_problem", {"problem": problem})
        for problem in ("expired", "not_yet_valid", "expiring_soon")
    }


@pytest.mark.parametrize(
    ("shift", "problem", "level"),
    [
        (timedelta(days=-30), "expired", "error"),  # valid for 10 days, 30 days ago
        (timedelta(days=2), "not_yet_valid", "error"),
    ],
)
def test_a_certificate_a_client_refuses_is_said_at_start_up(
    files: Files, authority: Authority, tmp_path: Path, shift: timedelta, problem: str, level: str
):
    """Such a webhook still starts (a renewal may be on its way), but says why every admission
    will fail, in the log and in a series."""
    _issue_at(authority, files, now=datetime.now(UTC) + shift, days=10)
    port, metrics_port = free_port(), free_port()
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(argv(files, port, metrics_port), stdout=out, stderr=err)
    webhook = Webhook(proc, port, metrics_port, stdout, stderr, files.ca)
    try:
        webhook.wait_for_event("started", timeout=15)
        (line,) = [e for e in webhook.logs() if e["event"] == f"certificate_{problem}"]
        problems = _problems(webhook)
        with pytest.raises(ssl.SSLCertVerificationError):
            webhook.request("GET", "/healthz")
    finally:
        proc.kill()
        proc.wait(timeout=10)

    assert line["level"] == level
    assert "not_after" in line
    assert problems == {name: float(name == problem) for name in problems}


def test_a_certificate_expiring_within_the_warning_period_is_warned_about(
    launch: Launch, files: Files, authority: Authority
):
    _issue_at(authority, files, now=datetime.now(UTC), days=3)
    warned = launch("--cert-validity-warning=96h")
    silent = launch("--cert-validity-warning=48h")
    never = launch("--cert-validity-warning=0")

    (line,) = [e for e in warned.logs() if e["event"] == "certificate_expiring_soon"]
    assert line["level"] == "warning"
    assert _problems(warned)["expiring_soon"] == 1
    for quiet in (silent, never):
        assert not [e for e in quiet.logs() if e["event"].startswith("certificate_ex")]
        assert _problems(quiet) == {"expired": 0, "not_yet_valid": 0, "expiring_soon": 0}


def test_a_default_certificate_gets_no_validity_warning(launch: Launch):
    webhook = launch()

    assert not [e for e in webhook.logs() if e["event"].startswith("certificate_ex")]
    assert _problems(webhook) == {"expired": 0, "not_yet_valid": 0, "expiring_soon": 0}


# --- a log that refuses lines -------------------------------------------------------------------


@pytest.mark.parametrize("log", ["a full disk", "a reader gone"])
def test_a_log_that_refuses_lines_costs_no_admission(files: Files, tmp_path: Path, log: str):
    # stdout on /dev/full (every write: ENOSPC), or a pipe whose reader has closed (EPIPE):
    # the admissions are answered as always, the lost lines are counted, stderr says it once.
    port, metrics_port = free_port(), free_port()
    stderr = tmp_path / "stderr.log"
    reader, writer = (
        os.pipe() if log == "a reader gone" else (-1, os.open("/dev/full", os.O_WRONLY))
    )
    try:
        with stderr.open("wb") as err:
            proc = subprocess.Popen(
                argv(files, port, metrics_port), stdout=writer, stderr=err, cwd=tmp_path
            )
    finally:
        os.close(writer)
    webhook = Webhook(proc, port, metrics_port, Path(os.devnull), stderr, files.ca)
    try:
        wait_until_sync(webhook.ready, timeout=30, interval=0.05, what="readiness")
        if reader >= 0:
            os.close(reader)
        for i in range(3):
            status, answer = webhook.mutate(make_review(make_pod("s3-reader"), uid=f"u-{i}"))
            assert status == 200
            assert answer["response"]["uid"] == f"u-{i}"
            assert answer["response"]["patchType"] == "JSONPatch"
        assert metric(webhook, "pod_identity_webhook_log_lines_lost_total") >= 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    notices = [json.loads(line) for line in stderr.read_text().splitlines()]
    assert [notice["event"] for notice in notices] == ["log_lines_lost"]
    assert notices[0]["error"] == (
        "OSError: No space left on device"
        if log == "a full disk"
        else "BrokenPipeError: Broken pipe"
    )
