"""promtool and the `selectors` helper, built from Go modules once per session.

`tools/promtool/build.sh` builds both into a cache outside the repository (minutes on a cold
machine, nothing after that). PROMTOOL names another promtool instead (a `selectors` beside it
is used when present). Without them the tests that need them are skipped with the reason, unless
POD_IDENTITY_WEBHOOK_REQUIRE_PROMTOOL=1 (CI), which makes them fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.tiers import executable, run_script

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "promtool" / "build.sh"


@dataclass
class Promtool:
    """Executables by name (promtool, selectors), or why each is missing."""

    paths: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def find_promtool(log: Path) -> Promtool:
    """Run build.sh (its stderr goes to `log`) and take promtool and selectors from its output."""
    found = Promtool()
    promtool = run_script(BUILD_SCRIPT, log=log, timeout=3600)
    if isinstance(promtool, str) or not executable(promtool):
        why = promtool if isinstance(promtool, str) else f"{promtool} is not an executable"
        for name in ("promtool", "selectors"):
            found.missing[name] = f"tools/promtool/build.sh failed: {why}"
        return found
    found.paths["promtool"] = promtool
    selectors = promtool.parent / "selectors"
    if executable(selectors):
        found.paths["selectors"] = selectors
    else:
        found.missing["selectors"] = f"no selectors beside {promtool}"
    return found


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Parsed:
    """What one PromQL expression reads, per Prometheus' own parser."""

    selectors: tuple[Selector, ...]
    labels: tuple[str, ...]
    """Labels it groups by or matches on (by, without, on, ignoring, group_left/right)."""


class PromQLError(Exception):
    pass


def parse_expressions(selectors: Path, expressions: list[str]) -> list[Parsed]:
    """Every expression through the `selectors` helper; PromQLError names any that fails."""
    result = subprocess.run(
        [str(selectors)],
        input=json.dumps(expressions),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise PromQLError(f"selectors failed ({result.returncode}): {result.stderr}")
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(answers) == len(expressions)
    parsed, errors = [], []
    for expression, answer in zip(expressions, answers, strict=True):
        if "error" in answer:
            errors.append(f"{expression!r}: {answer['error']}")
            continue
        parsed.append(
            Parsed(
                selectors=tuple(
                    Selector(
                        s["metric"],
                        tuple(Matcher(m["label"], m["op"], m["value"]) for m in s["matchers"]),
                    )
                    for s in answer.get("selectors", [])
                ),
                labels=tuple(answer.get("labels", [])),
            )
        )
    if errors:
        raise PromQLError("\n".join(errors))
    return parsed


@dataclass
class Exposition:
    """What one scrape of /metrics offers to PromQL."""

    names: set[str]
    """Series names a query can select: every sample's, and those its TYPE lines imply."""
    labels: dict[str, set[str]]
    """Label names seen on each series name's samples."""
    values: dict[tuple[str, str], set[str]]
    """Label values seen on samples above 0, by (series name, label): counters start at 0 for
    their known label values, so only a positive one shows that the drive reached it."""


_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exposition(text: str) -> Exposition:
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        names.update(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                if sample.value > 0:
                    values.setdefault((sample.name, label), set()).add(value)
    return Exposition(names, labels, values)
