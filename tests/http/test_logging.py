"""One canonical log line per admission, and no secrets in any log line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import structlog

from tests.http.conftest import Harness, MakeHarness
from tests.http.helpers import JSON, sample_review
from tests.support.reviews import ROLE, make_pod, make_review

pytestmark = pytest.mark.timeout(20)

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldC10b2tlbiJ9.c2VjcmV0.c2ln"
PASSWORD = "hunter2-very-secret-password"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"


def _secretive_review(service_account: str = "s3-reader") -> dict[str, Any]:
    """A review whose Pod and request carry secrets the webhook must never log."""
    pod = make_pod(
        service_account,
        containers=[
            {
                "name": "app",
                "image": "x",
                "env": [
                    {"name": "DB_PASSWORD", "value": PASSWORD},
                    {"name": "TLS_KEY", "value": PRIVATE_KEY},
                ],
                "args": ["--token", TOKEN],
            }
        ],
        annotations={"example.com/token": TOKEN},
    )
    review = make_review(pod)
    review["request"]["userInfo"] = {
        "username": "system:serviceaccount:kube-system:replicaset-controller",
        "extra": {"authentication.kubernetes.io/credential-id": [TOKEN]},
    }
    return review


def _admissions(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "admission"]


async def test_each_admission_logs_exactly_one_line_with_the_decision(harness: Harness):
    review = sample_review()

    with structlog.testing.capture_logs() as logs:
        await harness.review(review)

    assert len(_admissions(logs)) == 1
    entry = _admissions(logs)[0]
    assert entry["log_level"] == "info"
    assert entry["uid"] == review["request"]["uid"]
    assert entry["namespace"] == "default"
    assert entry["pod"] == "web-"  # generateName when the Pod has no name yet
    assert entry["service_account"] == "s3-reader"
    assert entry["outcome"] == "mutated"
    assert entry["reason"] == "injected"
    assert entry["role_source"] == "service-account"
    assert entry["method"] == "sts_web_identity"
    assert isinstance(entry["duration_ms"], float)
    assert 0 <= entry["duration_ms"] < 5000


async def test_the_log_line_names_the_pod_when_it_has_a_name(harness: Harness):
    with structlog.testing.capture_logs() as logs:
        await harness.review(make_review(make_pod("default", name="named-pod")))

    (entry,) = _admissions(logs)
    assert entry["pod"] == "named-pod"
    assert entry["outcome"] == "not_mutated"
    assert entry["reason"] == "no-role"
    assert entry["role_source"] is None


async def test_a_missing_account_is_logged_as_not_mutated(harness: Harness):
    with structlog.testing.capture_logs() as logs:
        await harness.review(make_review(make_pod("ghost")))

    (entry,) = _admissions(logs)
    assert entry["outcome"] == "not_mutated"
    assert entry["reason"] == "service-account-not-found"
    assert entry["service_account"] == "ghost"


async def test_every_request_logs_one_line(harness: Harness):
    with structlog.testing.capture_logs() as logs:
        for i in range(5):
            await harness.review(make_review(make_pod(), uid=f"uid-{i}"))

    assert [entry["uid"] for entry in _admissions(logs)] == [f"uid-{i}" for i in range(5)]


async def test_a_rejected_request_logs_one_warning_and_no_admission(harness: Harness):
    with structlog.testing.capture_logs() as logs:
        await harness.client.post("/mutate", data=b"[1, 2", headers=JSON)

    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("admission_rejected", "warning")
    ]
    assert logs[0]["status"] == 400


async def test_no_secret_from_the_request_reaches_the_logs(make_harness: MakeHarness):
    harness = await make_harness(grace_period=0.05)

    with structlog.testing.capture_logs() as logs:
        await harness.review(_secretive_review())
        await harness.review(_secretive_review("default"))
        await harness.review(_secretive_review("ghost"))
        broken = _secretive_review()
        broken["request"]["object"]["kind"] = "Secret"
        await harness.client.post("/mutate", data=json.dumps(broken), headers=JSON)
        truncated = json.dumps(_secretive_review())[:-3]
        await harness.client.post("/mutate", data=truncated, headers=JSON)

    text = repr(logs)
    assert len(logs) >= 5
    for secret in (TOKEN, PASSWORD, "PRIVATE KEY", "MIGHAgEAMBMGByqGSM49"):
        assert secret not in text
    assert ROLE not in json.dumps(_admissions(logs))  # the role lives in audit annotations


def test_an_exception_logged_as_json_carries_no_local_variables():
    # A 500's traceback must not dump the handler's locals (the request body, the Pod's env).
    script = textwrap.dedent(
        f"""
        import io, structlog
        from webhook import telemetry
        out = io.StringIO()
        telemetry.configure_logs(fmt="json", stream=out)
        def handle(body):
            token = {TOKEN!r}
            raise RuntimeError("simulated bug")
        try:
            handle(b'{{"password": "{PASSWORD}"}}')
        except RuntimeError:
            structlog.get_logger("webhook").exception("internal_error")
        print(out.getvalue(), end="")
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=15, check=True
    )

    (line,) = result.stdout.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "internal_error"
    assert "simulated bug" in line  # the exception itself is kept
    assert TOKEN not in line
    assert PASSWORD not in line
