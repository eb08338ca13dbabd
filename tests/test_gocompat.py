"""Go's flag grammar: what an upstream Deployment's command line may contain."""

from __future__ import annotations

import pytest

from webhook.errors import FlagError
from webhook.flags import FlagSpec, parse_args
from webhook.gocompat import (
    format_duration,
    parse_go_bool,
    parse_go_duration,
    parse_go_int,
    parse_go_int10,
)


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true_spellings(text):
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_false_spellings(text):
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "no", "tRUE", " true", "2", "on"])
def test_other_bool_spellings_are_rejected(text):
    with pytest.raises(ValueError):
        parse_go_bool(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("443", 443),
        ("0x1bb", 443),
        ("0X1BB", 443),
        ("0o673", 443),
        ("0673", 443),
        ("0b110111011", 443),
        ("1_000", 1000),
        ("0x_1bb", 443),
        ("-5", -5),
        ("+5", 5),
        ("0", 0),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_go_base0_integers(text, value):
    assert parse_go_int(text) == value


@pytest.mark.parametrize(
    "text",
    [
        *("", "abc", "1.5", "08", "1__0", "_1", "1_", "0x", "9223372036854775808", " 1", "1e3"),
        *("1_z", "1z_0", "0x_g"),  # what strconv's underscore check refuses besides digits
    ],
)
def test_invalid_go_integers(text):
    with pytest.raises(ValueError):
        parse_go_int(text)


@pytest.mark.parametrize(
    ("text", "value"), [("3600", 3600), ("+3600", 3600), ("-1", -1), ("007", 7)]
)
def test_base10_integers(text, value):
    assert parse_go_int10(text) == value


@pytest.mark.parametrize(
    "text", ["", " 3600", "36e2", "0x10", "1_000", "99999999999999999999", "3600 "]
)
def test_invalid_base10_integers(text):
    with pytest.raises(ValueError):
        parse_go_int10(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("60s", 60.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("100us", 0.0001),
        ("100\u00b5s", 0.0001),
        ("-1s", -1.0),
        ("1h2m3s4ms", 3723.004),
        (".5s", 0.5),
        ("2s.", None),
    ],
)
def test_go_durations(text, seconds):
    if seconds is None:
        with pytest.raises(ValueError):
            parse_go_duration(text)
    else:
        assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "1x", "s", "1.s.", "-", "10 s", "1d", "2562048h", "9223372036854775808ns"]
)
def test_invalid_go_durations(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.1, "100ms"), (60, "1m0s"), (3661, "1h1m1s"), (5, "5s")]
)
def test_durations_render_like_go(seconds, text):
    assert format_duration(seconds) == text


SPECS = (
    FlagSpec("port", parse_go_int, 443, "port", "int"),
    FlagSpec("in-cluster", parse_go_bool, True, "x", "bool"),
    FlagSpec("name", str, "", "x"),
    FlagSpec("v", parse_go_int, 0, "x", "int", shorthand="v"),
    FlagSpec("quiet", parse_go_bool, False, "x", "bool", shorthand="q"),
    FlagSpec("many", str, None, "x", "stringArray", repeatable=True),
)


def test_long_flags_take_equals_or_next_argument():
    parsed = parse_args(["--port=8443", "--name", "-dash-value"], SPECS)
    assert parsed.values["port"] == 8443
    assert parsed.values["name"] == "-dash-value"
    assert parsed.explicit == {"port", "name"}


def test_bool_flags_only_take_a_value_after_equals():
    parsed = parse_args(["--in-cluster", "false"], SPECS)
    assert parsed.values["in-cluster"] is True
    assert parsed.positional == ("false",)
    assert parse_args(["--in-cluster=false"], SPECS).values["in-cluster"] is False


def test_shorthand_forms():
    assert parse_args(["-v", "4"], SPECS).values["v"] == 4
    assert parse_args(["-v4"], SPECS).values["v"] == 4
    assert parse_args(["-v=4"], SPECS).values["v"] == 4
    assert parse_args(["--v=4"], SPECS).values["v"] == 4
    assert parse_args(["-q"], SPECS).values["quiet"] is True


def test_defaults_and_repeatable_flags():
    parsed = parse_args(["--many", "a", "--many=b"], SPECS)
    assert parsed.values["many"] == ["a", "b"]
    assert parsed.values["port"] == 443
    assert parse_args([], SPECS).values["many"] == []


def test_double_dash_ends_flags():
    assert parse_args(["--", "--port=1"], SPECS).positional == ("--port=1",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unknown flag: --nope"),
        (["-port=1"], "unknown shorthand flag: 'p' in -port=1"),
        (["--port"], "flag needs an argument: --port"),
        (["--port=abc"], "invalid argument 'abc' for --port"),
        (["-v"], "flag needs an argument: -v"),
        (["-qx"], "unknown shorthand flag: 'x' in -qx"),
        (["--in-cluster=maybe"], "invalid argument 'maybe' for --in-cluster"),
    ],
)
def test_bad_command_lines_name_the_flag(argv, message):
    with pytest.raises(FlagError) as caught:
        parse_args(argv, SPECS)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
