"""Pure. The small part of spf13/pflag upstream's command line relies on, so an upstream
Deployment's `command:` works unchanged.

Python's argparse differs in ways that break real manifests (`--in-cluster=false`,
`--port 0x1bb`, `--flag false`), so this module reads long flags with `=` or a following value,
bool flags that take a value only after `=`, one-letter shorthands, `--`, and positional
arguments anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.errors import FlagError
from webhook.gocompat import format_duration

__all__ = ["FlagSpec", "ParsedFlags", "parse_args", "usage"]


@dataclass(frozen=True, slots=True)
class FlagSpec:
    """One command-line flag: its pflag name, value parser and default."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    kind: str = "string"  # shown in --help: string, bool, int, duration, stringArray
    shorthand: str = ""
    repeatable: bool = False
    accepted_only: bool = False  # accepted for compatibility; value is not used

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"


@dataclass(frozen=True, slots=True)
class ParsedFlags:
    values: dict[str, Any]
    explicit: frozenset[str]
    positional: tuple[str, ...]


def parse_args(argv: Sequence[str], specs: Iterable[FlagSpec]) -> ParsedFlags:  # noqa: C901, PLR0912, PLR0915 - pflag's grammar is one state machine; split, it reads worse
    """Parse argv the way pflag does; values not given keep their defaults."""
    by_name = {spec.name: spec for spec in specs}
    by_short = {spec.shorthand: spec for spec in by_name.values() if spec.shorthand}
    values: dict[str, Any] = {
        name: ([] if spec.repeatable else spec.default) for name, spec in by_name.items()
    }
    explicit: set[str] = set()
    positional: list[str] = []

    def assign(spec: FlagSpec, raw: str, shown: str) -> None:
        try:
            value = spec.parse(raw)
        except ValueError as exc:
            raise FlagError(f"invalid argument {raw!r} for {shown}: {exc}") from None
        if spec.repeatable:
            values[spec.name].append(value)
        else:
            values[spec.name] = value
        explicit.add(spec.name)

    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, raw = arg[2:].partition("=")
            spec = by_name.get(name)
            if spec is None:
                raise FlagError(f"unknown flag: --{name}")
            if eq:
                assign(spec, raw, f"--{name}")
            elif spec.is_bool:
                assign(spec, "true", f"--{name}")
            elif i < len(args):
                assign(spec, args[i], f"--{name}")
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
            continue
        if arg.startswith("-") and len(arg) > 1:
            letter, rest = arg[1], arg[2:]
            spec = by_short.get(letter)
            if spec is None:
                raise FlagError(f"unknown shorthand flag: {letter!r} in {arg}")
            if rest.startswith("="):
                assign(spec, rest[1:], f"-{letter}")
            elif rest and not spec.is_bool:
                assign(spec, rest, f"-{letter}")
            elif rest:
                raise FlagError(f"unknown shorthand flag: {rest[0]!r} in {arg}")
            elif spec.is_bool:
                assign(spec, "true", f"-{letter}")
            elif i < len(args):
                assign(spec, args[i], f"-{letter}")
                i += 1
            else:
                raise FlagError(f"flag needs an argument: -{letter}")
            continue
        positional.append(arg)
    return ParsedFlags(values=values, explicit=frozenset(explicit), positional=tuple(positional))


def usage(specs: Iterable[FlagSpec]) -> str:
    """pflag-style flag listing for --help."""
    lines = []
    for spec in specs:
        short = f"-{spec.shorthand}, " if spec.shorthand else "    "
        kind = "" if spec.is_bool else f" {spec.kind}"
        left = f"  {short}--{spec.name}{kind}"
        default = ""
        if spec.kind == "duration":
            default = f" (default {format_duration(spec.default)})"
        elif spec.is_bool:
            default = " (default true)" if spec.default else ""
        elif spec.default not in ("", None, [], 0) or spec.kind == "int":
            shown = f'"{spec.default}"' if isinstance(spec.default, str) else spec.default
            default = f" (default {shown})"
        lines.append(f"{left:<58} {spec.help}{default}")
    return "\n".join(lines)
