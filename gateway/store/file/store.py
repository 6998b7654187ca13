"""The file store itself: :class:`FileStore`, with its upkeep and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from stat import S_ISDIR

from gateway.store.base import StorageError
from gateway.store.file.compose import FileCompose
from gateway.store.file.disk import _manifest_at


class FileStore(FileCompose):
    """:class:`~gateway.store.base.ObjectStore` in a directory on the local disk."""

    async def housekeep(self, older_than: float = 3600.0) -> int:
        """Remove parts dirs no manifest names, untouched for ``older_than`` seconds.

        They are left by a crash between the steps of a completion, an
        overwrite or a delete. The age guard spares a completion in flight,
        whose parts dir exists a moment before its manifest does. Returns how
        many were removed.
        """
        return await asyncio.to_thread(self._sweep_parts, time.time() - older_than)

    def _sweep_parts(self, cutoff: float) -> int:
        candidates: list[str] = []
        for entry in os.scandir(self._parts):
            with contextlib.suppress(FileNotFoundError):
                stat = entry.stat(follow_symlinks=False)
                if S_ISDIR(stat.st_mode) and stat.st_mtime < cutoff:
                    candidates.append(entry.name)
        if not candidates:
            return 0
        named: set[str] = set()
        for dirpath, _, filenames in os.walk(self._objects):
            for name in filenames:
                manifest = _manifest_at(Path(dirpath) / name)
                if manifest is not None:
                    named.add(manifest.parts_id)
        removed = 0
        for parts_id in candidates:
            if parts_id not in named:
                self._remove_parts(parts_id)
                removed += 1
        return removed

    # -- lifecycle --------------------------------------------------------------------------

    async def presign_get(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        return None  # a directory has no URLs: the gateway serves the bytes itself

    async def ping(self) -> None:
        ok = await asyncio.to_thread(os.access, self._objects, os.W_OK | os.X_OK)
        if not ok:
            raise StorageError(f"the store directory {self._objects} is not writable")

    async def close(self) -> None:
        return None
