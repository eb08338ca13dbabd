#!/usr/bin/env python3
"""Run the real webhook with benchmark-only monkeypatches, to measure what a change would buy
without editing webhook/. Nothing here is meant for production.

    python benchmarks/webhook_variant.py VARIANTS -- [webhook flags...]

VARIANTS is a '+'-separated list (or 'none'):

  nolog      drop the per-admission "admission" log line (other lines stay)
  nometrics  no Prometheus or upstream series on the /mutate path
  gcfreeze   gc.collect() + gc.freeze() once everything is imported, so the collector's older
             generations stop rescanning the start-up objects (aiohttp, kubernetes, ...)

(The uvloop and orjson variants measured in benchmarks/README.md are gone: the webhook runs on
both now.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _nolog() -> None:
    import webhook.server.app

    def quiet(*_: object, **__: object) -> None:
        pass

    webhook.server.app._log_admission = quiet  # noqa: SLF001


def _nometrics() -> None:
    import webhook.server.lifecycle
    from webhook.server.metrics import Metrics

    class QuietMetrics(Metrics):
        def record(self, *_: object, **__: object) -> None:
            pass

        def observe_request(self, *_: object) -> None:
            pass

    webhook.server.lifecycle.Metrics = QuietMetrics  # type: ignore[attr-defined]


def _gcfreeze() -> None:
    import gc

    import webhook.cli  # noqa: F401 - import everything the server uses first

    gc.collect()
    gc.freeze()


VARIANTS: dict[str, Callable[[], None]] = {
    "nolog": _nolog,
    "nometrics": _nometrics,
    "gcfreeze": _gcfreeze,
}


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[1] != "--":
        sys.exit(__doc__)
    variants = [] if argv[0] == "none" else argv[0].split("+")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"webhook_variant: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    for variant in variants:
        VARIANTS[variant]()
    from webhook.cli import main as webhook_main

    webhook_main(argv[2:])


if __name__ == "__main__":
    main()
