"""Where a tier keeps the logs of the tools it builds (kube-apiserver, promtool, shellcheck...).

In pytest's cache when the cache is on, as in CI and `make test`: the log of the last build
stays there for the next run to point at. With `-p no:cacheprovider` there is no such place, so
the logs go to a temporary directory that is removed when the session ends, rather than one
more directory left in /tmp by every run.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import pytest

_MADE = pytest.StashKey[dict[str, Path]]()


def log_directory(config: pytest.Config, name: str) -> Path:
    """The directory for tier `name`'s build logs; the same one for the whole session."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(name))
    made = config.stash.setdefault(_MADE, {})
    if name not in made:
        made[name] = Path(tempfile.mkdtemp(prefix=f"pod-identity-webhook-{name}-"))
        config.add_cleanup(partial(shutil.rmtree, made[name], ignore_errors=True))
    return made[name]
