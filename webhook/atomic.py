"""Writing a file so that a reader sees the old content or the new, never half of either.

The serving pair is reloaded from disk while the webhook runs, and `certs`, `oidc` and the
certificate bootstrap all write files someone else reads: each goes through this one function.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over
    `path`. The temporary file is created 0600 and only then given `mode`, so a private key is
    never readable by others, not even for an instant."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise
