"""Pure. Go's grammars, in one place: what upstream's values mean because Go parses them.

strconv.ParseBool and ParseInt (flags and annotations), time.ParseDuration, filepath.Join,
encoding/json's case-insensitive field names and encoding/csv's first record. Upstream reads
its flags, annotations, ConfigMap and identities file with these, so we read them the same way.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from webhook.errors import CsvError

__all__ = [
    "MISSING",
    "first_csv_record",
    "format_duration",
    "go_json_field",
    "go_path_join",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_int",
    "parse_go_int10",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


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


@functools.lru_cache(maxsize=16)
def go_path_join(*elements: str) -> str:
    """Go's filepath.Join on Unix: join the non-empty elements, then path.Clean.

    Cached: its inputs are the few mount paths and token names of the configuration."""
    joined = "/".join(e for e in elements if e)
    if not joined:
        return ""
    rooted = joined.startswith("/")
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


class _Missing:
    """A JSON field that is absent (as opposed to null)."""


MISSING: Any = _Missing()


def go_json_field(obj: Mapping[str, Any], name: str) -> Any:
    """encoding/json field lookup: exact or case-insensitive key, the last one wins."""
    found = MISSING
    lowered = name.lower()
    for key, value in obj.items():
        if key == name or key.lower() == lowered:
            found = value
    return found


def first_csv_record(text: str) -> list[str]:  # noqa: C901, PLR0912, PLR0915 - encoding/csv's reader is one state machine
    """The first record of a CSV document, exactly as Go's encoding/csv Reader.Read returns it."""
    # Go splits on "\n" only; a lone "\r" stays inside a line.
    lines = [part for part in re.split(r"(?<=\n)", text) if part]
    normalised = []
    for raw in lines:
        if raw.endswith("\r\n"):
            normalised.append(raw[:-2] + "\n")
        elif raw.endswith("\r"):
            normalised.append(raw[:-1])  # only the last line can end so; Go drops it at EOF
        else:
            normalised.append(raw)
    index = 0
    while index < len(normalised) and normalised[index] == "\n":
        index += 1
    if index == len(normalised):
        raise CsvError("EOF")
    line = normalised[index]
    index += 1
    fields: list[str] = []
    while True:
        if not line.startswith('"'):
            comma = line.find(",")
            field = line[:comma] if comma >= 0 else line.removesuffix("\n")
            if '"' in field:
                raise CsvError('bare " in non-quoted-field')
            fields.append(field)
            if comma >= 0:
                line = line[comma + 1 :]
                continue
            return fields
        line = line[1:]
        buffer = []
        while True:
            quote = line.find('"')
            if quote >= 0:
                buffer.append(line[:quote])
                line = line[quote + 1 :]
                if line.startswith('"'):
                    buffer.append('"')
                    line = line[1:]
                    continue
                if line.startswith(","):
                    line = line[1:]
                    fields.append("".join(buffer))
                    break
                if line in ("", "\n"):
                    fields.append("".join(buffer))
                    return fields
                raise CsvError('extraneous or missing " in quoted-field')
            if line:
                buffer.append(line)
                if index < len(normalised):
                    line = normalised[index]
                    index += 1
                else:
                    line = ""
                continue
            raise CsvError('extraneous or missing " in quoted-field')
