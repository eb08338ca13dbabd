"""Files that feed the store: container-credentials identities, a static ServiceAccounts file,
a static ConfigMap manifest. Each is read at start-up and then polled by content digest, which
survives the `..data` symlink swap a Kubernetes ConfigMap volume uses to update files.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["PolledFile"]


class PolledFile:
    """Calls `apply(text)` with the file's content whenever it changes (None: no file).

    `apply` raises ValueError for content it rejects; the previous state then stays in force
    and `on_error` is told, once per distinct bad content.
    """

    def __init__(
        self,
        path: str,
        apply: Callable[[str | None], None],
        *,
        on_error: Callable[[Exception], None],
        interval: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._apply = apply
        self._on_error = on_error
        self._interval = interval
        self._digest: str | None = ""  # "" = never read; None = file absent

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def load(self) -> None:
        """First read at start-up: raises OSError or ValueError instead of reporting."""
        text = self._read()
        self._apply(text)
        self._digest = None if text is None else hashlib.sha256(text.encode()).hexdigest()

    def check(self) -> bool:
        """Apply the file if it changed; True when new content was applied."""
        try:
            text = self._read()
        except (OSError, UnicodeDecodeError) as exc:
            digest: str | None = f"error:{exc}"
            if digest != self._digest:
                self._digest = digest
                self._on_error(exc)
            return False
        digest = None if text is None else hashlib.sha256(text.encode()).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            self._apply(text)
        except ValueError as exc:
            self._on_error(exc)
            return False
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()
