#!/usr/bin/env python3
"""Per-admission CPU cost of each stage of /mutate, in process, without HTTP or TLS.

The load test says how fast the whole server is; this says where the time goes, with numbers
that hold up on a noisy machine (each figure is the best of several timeit repeats). It calls
the webhook's own functions the way `webhook.server.app.mutate` does, for benchmarks/review.json and
the annotated ServiceAccount in dev/service-accounts.yaml.

    .venv/bin/python benchmarks/micro.py

Stages: json.loads of the body; parse_review + decide; respond + json.dumps of the answer;
the metrics calls of one admission; the admission log line (JSON to /dev/null and to a file).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry

from webhook import telemetry
from webhook.admission.mutation import Decision, decide
from webhook.admission.reviews import AdmissionRequest, parse_review, respond
from webhook.admission.verdicts import answer as answer_for
from webhook.admission.verdicts import verdict
from webhook.config import MutationConfig
from webhook.server import app as webhook_app
from webhook.server.metrics import Metrics
from webhook.sources.manifests import load_documents, service_account_objects
from webhook.sources.store import Store
from webhook.telemetry import production_registry

ROOT = Path(__file__).resolve().parent.parent


def best_us(fn: Callable[[], Any], number: int = 2000, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


Core = Callable[[], Decision]


def main() -> None:
    body = json.dumps(
        json.loads((ROOT / "benchmarks/review.json").read_text()), separators=(",", ":")
    ).encode()
    config = MutationConfig()
    store = Store(config)
    notes: list[Any] = []
    text = (ROOT / "dev/service-accounts.yaml").read_text()
    store.replace_service_accounts(service_account_objects(load_documents(text, "sa"), notes))

    review = json.loads(body)
    admission = parse_review(review)

    def core() -> Decision:
        a = parse_review(review)
        return decide(a.pod, namespace=a.namespace, sources=store, config=config)

    decision = core()
    if not decision.mutated:
        raise SystemExit(f"micro: the review was not mutated ({decision.reason})")
    rows = _core_rows(body, admission, decision, core)
    rows += _log_rows(admission, decision)
    rows += _orjson_rows(body, admission, decision)
    width = max(len(name) for name, _ in rows)
    print(f"{'stage':<{width}}  CPU us per admission (best of 7)")
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.1f}" if us else name)


def _core_rows(
    body: bytes, admission: AdmissionRequest, decision: Decision, core: Core
) -> list[tuple[str, float]]:
    def answer() -> str:
        return json.dumps(respond(admission, answer_for(decision)), separators=(",", ":"))

    metrics = Metrics(CollectorRegistry())
    production = Metrics(production_registry())
    judged = verdict(decision)

    def count(m: Metrics) -> Callable[[], None]:
        def run() -> None:
            m.record(judged, method=decision.method, lookup="cache", seconds=0.0004)
            m.observe_request("POST", "/mutate", 200, 0.0004)

        return run

    rows: list[tuple[str, float]] = [
        (f"json.loads of the review ({len(body)} bytes)", best_us(lambda: json.loads(body))),
        ("parse_review + decide (9 patch operations)", best_us(core)),
        (
            "respond (dicts, patch JSON + base64)",
            best_us(lambda: respond(admission, answer_for(decision))),
        ),
        (f"respond + json.dumps of the answer ({len(answer())} bytes)", best_us(answer)),
        ("metrics: the 2 calls of one admission", best_us(count(metrics))),
    ]
    del production
    return rows


def _configure(stream: Any) -> None:
    # The webhook caches its logger on first use; a fresh proxy picks up the new settings.
    telemetry.configure_logs(stream=stream)
    webhook_app.log = structlog.get_logger("webhook")


def _log_line(admission: AdmissionRequest, decision: Decision) -> Callable[[], None]:
    judged = verdict(decision)

    def log_line() -> None:
        webhook_app._log_admission(admission, decision, judged, "cache", 0.0004, None)  # noqa: SLF001

    return log_line


def _log_rows(admission: AdmissionRequest, decision: Decision) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    log_line = _log_line(admission, decision)
    with open("/dev/null", "w") as devnull:  # noqa: PTH123
        _configure(devnull)
        rows.append(("admission log line, JSON, stdout to /dev/null", best_us(log_line)))
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "log", "w") as file:  # noqa: PTH123
        _configure(file)
        rows.append(("admission log line, JSON, stdout to a file", best_us(log_line)))
        with contextlib.suppress(Exception):
            line = io.StringIO()
            _configure(line)
            log_line()
            rows.append((f"  (one line is {len(line.getvalue())} bytes)", 0.0))
    return rows


def _orjson_rows(
    body: bytes, admission: AdmissionRequest, decision: Decision
) -> list[tuple[str, float]]:
    # The log line is rendered with orjson already (the rows above); these are the JSON stages.
    return [
        ("orjson.loads of the review", best_us(lambda: orjson.loads(body))),
        (
            "respond + orjson.dumps of the answer",
            best_us(lambda: orjson.dumps(respond(admission, answer_for(decision)))),
        ),
    ]


if __name__ == "__main__":
    main()
