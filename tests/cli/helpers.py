"""Running a command function in-process, with its output captured."""

from __future__ import annotations

import io
from collections.abc import Callable

Command = Callable[..., int]


def run(command: Command, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = command(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err
