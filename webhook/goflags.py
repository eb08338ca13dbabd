"""Pure. Go's command-line grammar, so an upstream Deployment's `command:` works unchanged.

Upstream parses its flags with spf13/pflag and Go's strconv/time packages. Python's argparse
differs in ways that break real manifests (`--in-cluster=false`, `--port 0x1bb`, `--flag false`),
so this module reproduces the small part of pflag we need: long flags with `=` or a following
value, bool flags that only take a value after `=`, one-letter shorthands, `--`, and positional
arguments anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FlagError",
    "FlagSpec",
    "ParsedFlags",
    "format_duration",
    "parse_args",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_int",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class FlagError(ValueError):
    """A command line that pflag would refuse; the message names the flag."""


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    """strconv.ParseBool: exactly these twelve spellings."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def _underscores_ok(body: str, *, hex_digits: bool, prefixed: bool) -> bool:
    # strconv.underscoreOK: "_" only between digits, or right after a base prefix.
    saw = "0" if prefixed else "^"
    for char in body:
        if char.isdigit() or (hex_digits and char.lower() in "abcdef"):
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def parse_go_int(text: str, *, bits: int = 64) -> int:
    """strconv.ParseInt(text, 0, bits): sign, 0x/0o/0b/leading-0 prefixes, `_` separators."""
    sign, body = 1, text
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base, digits, prefixed = 10, body, False
    if len(body) >= 2 and body[0] == "0" and body[1].lower() in "xob":
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        digits, prefixed = body[2:], True
    elif len(body) >= 2 and body[0] == "0":
        base, digits = 8, body[1:]
    if "_" in digits or "_" in body:
        if not _underscores_ok(digits, hex_digits=base == 16, prefixed=prefixed):
            raise ValueError(f"invalid integer {text!r}")
        digits = digits.replace("_", "")
    allowed = "0123456789abcdef"[:base]
    if not digits or any(c.lower() not in allowed for c in digits):
        raise ValueError(f"invalid integer {text!r}")
    value = sign * int(digits, base)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise ValueError(f"integer {text!r} is out of range")
    return value


def parse_go_int10(text: str) -> int:
    """strconv.ParseInt(text, 10, 64): optional sign and ASCII digits only (annotation values)."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"invalid integer {text!r}")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"integer {text!r} is out of range")
    return value


_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]+)")


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, returned in seconds: `1m30s`, `500ms`, `-1h`, bare `0`."""
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total_ns = 0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise ValueError(
                f"invalid duration {text!r} (a number needs a unit: ns, us, ms, s, m, h)"
            )
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        scale = _UNITS_NS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        total_ns += int(whole or "0") * scale
        if frac:
            total_ns += int(frac) * scale // 10 ** len(frac)
        pos = match.end()
    if total_ns > INT64_MAX:
        raise ValueError(f"invalid duration {text!r} (out of range)")
    return sign * total_ns / 1e9


def format_duration(seconds: float) -> str:
    """A short Go-style rendering for --help (`60s` → `1m0s`)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


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


def parse_args(argv: Sequence[str], specs: Iterable[FlagSpec]) -> ParsedFlags:
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
