#!/usr/bin/env python3
"""CPU cost of the pure admission core for benchmarks/review.json: parse_review + decide +
answer, in process, best of several timeit repeats. Rows: upstream's defaults, and with a local
STS and a CA bundle (--sts-endpoint-url, --ca-bundle-config-map; issue 17), whose cost when
unused must be nil. Run it on another checkout to compare (PYTHONPATH=that checkout):

    .venv/bin/python benchmarks/decide.py
"""

from __future__ import annotations

import dataclasses
import json
import timeit
from pathlib import Path
from typing import Any

from webhook.admission.mutation import decide
from webhook.admission.reviews import parse_review
from webhook.admission.verdicts import answer
from webhook.config import MutationConfig
from webhook.sources.manifests import load_documents, service_account_objects
from webhook.sources.store import Store

ROOT = Path(__file__).resolve().parent.parent


def best_us(fn: Any, number: int = 3000, repeat: int = 9) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def measure(config: MutationConfig) -> tuple[float, int]:
    store = Store(config)
    text = (ROOT / "dev/service-accounts.yaml").read_text()
    store.replace_service_accounts(service_account_objects(load_documents(text, "sa"), []))
    review = json.loads((ROOT / "benchmarks/review.json").read_text())

    def core() -> Any:
        request = parse_review(review)
        decision = decide(request.pod, namespace=request.namespace, sources=store, config=config)
        return answer(decision)

    return best_us(core), len(core().ops)


def main() -> None:
    rows = [("defaults", MutationConfig())]
    fields = {f.name for f in dataclasses.fields(MutationConfig)}
    if {"sts_endpoint_url", "ca_bundle"} <= fields:
        from webhook.config import parse_config_map_key

        rows.append(
            (
                "--sts-endpoint-url and --ca-bundle-config-map",
                MutationConfig(
                    sts_endpoint_url="https://moto.moto.svc:5000",
                    ca_bundle=parse_config_map_key("aws-local-ca"),
                ),
            )
        )
    for name, config in rows:
        micros, ops = measure(config)
        print(f"{name:48} {micros:7.1f} us per admission ({ops} patch operations)")


if __name__ == "__main__":
    main()
