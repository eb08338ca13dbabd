#!/usr/bin/env python3
"""Our own CPU per admission, stage by stage, in process: no HTTP, no TLS.

The load tests say how fast the whole server is; this says where our part of the time goes,
for each request class of `pods.py` (small, large, unannotated), with figures that hold up on
a busy machine: each is the best of several timeit repeats of the process's CPU time, with hot
caches. In the server every
stage costs more than here (cold caches between requests), so compare rows and versions, not
this total with the load test's CPU per admission.

    .venv/bin/python benchmarks/micro.py            # about 30 s
    .venv/bin/python benchmarks/micro.py --quick    # fewer repeats, about 10 s
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/micro.py   # another version's webhook/
                                                  # (one with webhook/admission/memo.py)

The stages are the calls `webhook.server.app._admit` makes with the body read, in its order
and with the same arguments (keep them in step with it): the JSON decode of the review; parse
(`parse_review`); decide, through the decision memo against a Store holding the benchmark's
ServiceAccounts, for a Pod the memo has not seen (the memo's key and `decide`) and for one it
has (the key and the check that its lookups still hold); respond + dumps (`verdict`, `answer`,
`respond`, `dumps`); metrics (`Metrics.record` and the middleware's `observe_request`, on a
production registry); the log line (`_log_admission` through the production structlog
configuration, to /dev/null). `own work` runs them all in one call, as one admission does, for
a new Pod and for one seen before (the replicas of a Deployment); the same without the decode
is what the issue's "our own CPU per small admission" target counts.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pods import ANNOTATED, CLASSES, NAMESPACE, PLAIN, ROLE_ANNOTATIONS, reviews  # noqa: E402

from webhook import telemetry  # noqa: E402
from webhook.admission.memo import DecisionMemo  # noqa: E402
from webhook.admission.mutation import Decision  # noqa: E402
from webhook.admission.reviews import AdmissionRequest, dumps, parse_review, respond  # noqa: E402
from webhook.admission.verdicts import answer, verdict  # noqa: E402
from webhook.config import MutationConfig  # noqa: E402
from webhook.server import app as webhook_app  # noqa: E402
from webhook.server.metrics import Metrics  # noqa: E402
from webhook.sources.store import Store  # noqa: E402

CONFIG = MutationConfig(region="us-west-2")  # the benchmarks' --aws-default-region


def best_us(fn: Callable[[], Any], repeat: int) -> float:
    """The best of `repeat` runs of about 40 ms each, in microseconds per call."""
    # CPU time of this process, not wall time: a busy machine preempts, it does not add work.
    timer = timeit.Timer(fn, timer=time.process_time)
    single = min(timer.repeat(number=1, repeat=3))
    number = max(20, int(0.04 / max(single, 1e-7)))
    return min(timer.repeat(number=number, repeat=repeat)) / number * 1e6


def store() -> Store:
    held = Store(CONFIG)
    held.replace_service_accounts(
        [(NAMESPACE, ANNOTATED, ROLE_ANNOTATIONS), (NAMESPACE, PLAIN, None)]
        + [(f"bench-{i % 9}", f"sa-{i}", None) for i in range(998)]
    )
    return held


def stages(body: bytes, held: Store, metrics: Metrics) -> dict[str, Callable[[], Any]]:
    review = orjson.loads(body)
    admission: AdmissionRequest = parse_review(review)

    # pods=0: every Pod is new to it, so each call pays the key, the recorder and `decide`.
    forgetful, remembering = DecisionMemo(CONFIG, pods=0), DecisionMemo(CONFIG)

    def decided(memo: DecisionMemo) -> Callable[[], Decision]:
        def run() -> Decision:
            return memo.decide(admission.pod, namespace=admission.namespace, sources=held)

        return run

    decision = decided(forgetful)()
    judged = verdict(decision, None)

    def responded() -> bytes:
        verdict(decision, None)
        return dumps(respond(admission, answer(decision, None)))

    def counted() -> None:
        metrics.record(judged, method=decision.method, lookup="cache", seconds=4e-4, extras=None)
        metrics.observe_request("POST", "/mutate", 200, 4e-4)

    def logged() -> None:
        webhook_app._log_admission(admission, decision, judged, "cache", 4e-4, None)  # noqa: SLF001

    def own(memo: DecisionMemo, *, decode: bool) -> Callable[[], bytes]:
        def run() -> bytes:
            started = time.perf_counter()
            parsed = parse_review(orjson.loads(body) if decode else review)
            made = memo.decide(parsed.pod, namespace=parsed.namespace, sources=held)
            if held.association_roles:
                raise SystemExit("micro: no PodIdentityAssociations expected")
            said = verdict(made, None)
            out = dumps(respond(parsed, answer(made, None)))
            seconds = time.perf_counter() - started
            metrics.record(said, method=made.method, lookup="cache", seconds=seconds, extras=None)
            metrics.observe_request("POST", "/mutate", 200, seconds)
            webhook_app._log_admission(parsed, made, said, "cache", seconds, None)  # noqa: SLF001
            return out

        return run

    return {
        "decode (orjson.loads)": lambda: orjson.loads(body),
        "parse (parse_review)": lambda: parse_review(review),
        "decide, a new Pod": decided(forgetful),
        "decide, a Pod seen before (memo)": decided(remembering),
        "respond + dumps": responded,
        "metrics (record + observe_request)": counted,
        "log line (to /dev/null)": logged,
        "own work without the decode, new Pod": own(forgetful, decode=False),
        "own work without the decode, seen Pod": own(remembering, decode=False),
        "own work with the decode, new Pod": own(forgetful, decode=True),
        "own work with the decode, seen Pod": own(remembering, decode=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    repeat = 3 if parser.parse_args().quick else 7
    held = store()
    metrics = Metrics(telemetry.production_registry())
    metrics.watch_store(held)
    bodies = {name: orjson.dumps(value) for name, value in reviews().items()}
    with Path("/dev/null").open("w") as devnull:
        # What `serve` does, with stdout sent to /dev/null; a fresh proxy picks the settings up.
        telemetry.configure_logs(fmt="json", stream=devnull)
        webhook_app.log = structlog.get_logger("webhook")
        table = {name: stages(bodies[name], held, metrics) for name in CLASSES}
        for name in CLASSES:
            said = orjson.loads(table[name]["own work with the decode, new Pod"]())["response"]
            if ("patch" in said) != (name != "unannotated"):
                raise SystemExit(f"micro: unexpected answer for the {name} Pod: {said}")
        rows = list(table["small"])
        figures = {
            (row, name): best_us(table[name][row], repeat) for row in rows for name in CLASSES
        }
    sizes = " ".join(f"{name} {len(bodies[name])} B" for name in CLASSES)
    print(f"CPU us per admission, best of {repeat} (reviews: {sizes})")
    width = max(len(row) for row in rows)
    print(f"| {'stage':<{width}} | " + " | ".join(f"{n:>11}" for n in CLASSES) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * 13 for _ in CLASSES) + "|")
    for row in rows:
        cells = " | ".join(f"{figures[row, name]:11.1f}" for name in CLASSES)
        print(f"| {row:<{width}} | {cells} |")


if __name__ == "__main__":
    main()
