#!/usr/bin/env python3
"""Per-admission CPU cost of each stage of /mutate, in process, without HTTP or TLS.

The load test says how fast the whole server is; this says where the time goes, with numbers
that hold up on a noisy machine (each figure is the best of several timeit repeats). It calls
the webhook's own functions the way `webhook.app.mutate` does, for benchmarks/review.json and
the annotated ServiceAccount in dev/service-accounts.yaml.

    .venv/bin/python benchmarks/micro.py
    PYTHONPATH=/tmp/bench-extra .venv/bin/python benchmarks/micro.py   # + orjson rows

Stages: json.loads of the body; parse_review + decide; respond + json.dumps of the answer;
the metrics calls of one admission; the admission log line (JSON to /dev/null and to a file).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from webhook.admission.mutation import decide
from webhook.admission.reviews import parse_review, respond
from webhook.config import MutationConfig
from webhook.server import app as webhook_app
from webhook import telemetry
from webhook.server.metrics import Metrics
from webhook.telemetry import production_registry
from webhook.sources.manifests import load_documents, service_account_objects
from webhook.sources.store import Store

ROOT = Path(__file__).resolve().parent.parent


def best_us(fn: Callable[[], Any], number: int = 2000, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


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

    def core() -> Any:
        a = parse_review(review)
        return decide(a.pod, namespace=a.namespace, sources=store, config=config)

    decision = core()
    if not decision.mutated:
        raise SystemExit(f"micro: the review was not mutated ({decision.reason})")

    def answer() -> str:
        return json.dumps(respond(admission, decision), separators=(",", ":"))

    metrics = Metrics(CollectorRegistry())
    production = Metrics(production_registry())

    def count(m: Metrics) -> Callable[[], None]:
        def run() -> None:
            m.lookups.labels("cache").inc()
            m.count_pod("sts_web_identity")
            m.admissions.labels("mutated", "injected").inc()
            m.admission_duration.observe(0.0004)
            m.observe_request("POST", "/mutate", 200, 0.0004)

        return run

    rows: list[tuple[str, float]] = [
        (f"json.loads of the review ({len(body)} bytes)", best_us(lambda: json.loads(body))),
        ("parse_review + decide (9 patch operations)", best_us(core)),
        ("respond (dicts, patch JSON + base64)", best_us(lambda: respond(admission, decision))),
        (f"respond + json.dumps of the answer ({len(answer())} bytes)", best_us(answer)),
        ("metrics: the 5 calls of one admission", best_us(count(metrics))),
    ]
    del production

    started = time.perf_counter()

    def configure(stream: Any) -> None:
        # The webhook caches its logger on first use; a fresh proxy picks up the new settings.
        telemetry.configure_logs(stream=stream)
        webhook_app.log = structlog.get_logger("webhook")

    def log_line() -> None:
        webhook_app._log_admission(admission, decision, "cache", started)  # noqa: SLF001

    with open("/dev/null", "w") as devnull:  # noqa: PTH123
        configure(devnull)
        rows.append(("admission log line, JSON, stdout to /dev/null", best_us(log_line)))
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "log", "w") as file:  # noqa: PTH123
        configure(file)
        rows.append(("admission log line, JSON, stdout to a file", best_us(log_line)))
        with contextlib.suppress(Exception):
            line = io.StringIO()
            configure(line)
            log_line()
            rows.append((f"  (one line is {len(line.getvalue())} bytes)", 0.0))

    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is not None:
        rows.append(("orjson.loads of the review", best_us(lambda: orjson.loads(body))))
        rows.append(
            (
                "respond + orjson.dumps of the answer",
                best_us(lambda: orjson.dumps(respond(admission, decision))),
            ),
        )

        def serializer(value: Any, **kw: Any) -> str:
            return orjson.dumps(value, default=kw.get("default")).decode()

        with open("/dev/null", "w") as devnull:  # noqa: PTH123
            renderer = structlog.processors.JSONRenderer
            structlog.processors.JSONRenderer = lambda **_: renderer(serializer=serializer)  # type: ignore[assignment, misc]
            try:
                configure(devnull)
                rows.append(("admission log line, orjson renderer, /dev/null", best_us(log_line)))
            finally:
                structlog.processors.JSONRenderer = renderer  # type: ignore[misc]

    width = max(len(name) for name, _ in rows)
    print(f"{'stage':<{width}}  CPU us per admission (best of 7)")
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.1f}" if us else name)


if __name__ == "__main__":
    main()
