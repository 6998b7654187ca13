"""Whole objects in the file store: put, get, head, delete, list, ranged reads."""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG

import aiofiles

from gateway.store.base import ObjectInfo
from gateway.store.file.disk import (
    _MISSING,
    _describe,
    _etag,
    _manifest_at,
    _open_object,
    _parse_manifest,
    _read_span,
    _unlink_quietly,
    _vanished,
)
from gateway.store.file.layout import FileLayout
from gateway.store.keys import check_prefix
from gateway.store.manifest import MAGIC, MAX_SIZE


class FileObjects(FileLayout):
    """Whole objects: each one file, or a manifest naming its parts."""

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        target = self._object_path(key)
        temp, stat = await self._write_temp(data)
        try:
            if bytes(data[: len(MAGIC)]) == MAGIC:
                # Stored as is, these bytes would read back as a manifest.
                return await asyncio.to_thread(
                    self._install_as_manifest, [temp], target, if_absent, key
                )
            await asyncio.to_thread(self._replace_object, temp, target, if_absent, key)
        finally:
            await asyncio.to_thread(_unlink_quietly, temp)
        return _etag(stat)

    async def get(self, key: str) -> bytes | None:
        path = self._object_path(key)
        try:
            return await asyncio.to_thread(self._get, path)
        except _MISSING:
            return None

    def _get(self, path: Path) -> bytes:
        """The whole object in one worker thread: small objects are the common case."""
        fd, stat, manifest = _open_object(path)
        try:
            if manifest is None:
                with open(fd, "rb", closefd=False) as fh:
                    return fh.read()
        finally:
            os.close(fd)
        directory = self._parts / manifest.parts_id
        pieces = []
        for name, _ in manifest.parts:
            try:
                pieces.append((directory / name).read_bytes())
            except FileNotFoundError:
                raise _vanished(path) from None
        return b"".join(pieces)

    async def head(self, key: str) -> ObjectInfo | None:
        path = self._object_path(key)
        try:
            return await asyncio.to_thread(_describe, path, key)
        except _MISSING:
            return None

    async def delete(self, key: str) -> None:
        path = self._object_path(key)
        await asyncio.to_thread(self._delete, path)

    def _delete(self, path: Path) -> None:
        try:
            if not S_ISREG(os.lstat(path).st_mode):
                return  # a prefix of other keys, not an object
            # Take the file out of sight first, so the manifest read below is
            # the one removed, whatever a concurrent put does meanwhile.
            graveyard = self._temp_path()
            os.rename(path, graveyard)
        except _MISSING:
            return
        manifest = _manifest_at(graveyard)
        _unlink_quietly(graveyard)
        if manifest is not None:
            self._remove_parts(manifest.parts_id)
        # Drop directories the delete left empty, as S3 has no directories.
        parent = path.parent
        while parent != self._objects:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        # Walk only the deepest directory the prefix names in full.
        head, _, _ = prefix.rpartition("/")
        start = self._objects.joinpath(*head.split("/")) if head else self._objects
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            base = Path(dirpath).relative_to(self._objects).as_posix()
            for name in filenames:
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    found.append(_describe(Path(dirpath) / name, key))
                except _MISSING:
                    continue  # deleted while listing
        found.sort(key=lambda info: info.key)
        return found

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream a byte range; a missing key raises KeyError, a range past the end is empty.

        A manifest object is read part by part, each opened as the range
        reaches it. Deleting or replacing the object while it is read removes
        parts not yet opened, so such a read ends in StorageError rather than
        in silently short data.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range start={start} end={end}")
        path = self._object_path(key)
        try:
            fh = await aiofiles.open(path, "rb")
        except _MISSING:
            raise KeyError(key) from None
        try:
            head: bytes = await fh.read(len(MAGIC))
            if head != MAGIC:
                await fh.seek(start)
                async for chunk in _read_span(fh, None if end is None else end - start):
                    yield chunk
                return
            rest: bytes = await fh.read(MAX_SIZE)
        finally:
            await fh.close()
        manifest = _parse_manifest(head + rest, path)
        directory = self._parts / manifest.parts_id
        started = False
        for span in manifest.spans(start, end):
            try:
                part = await aiofiles.open(directory / span.name, "rb")
            except FileNotFoundError:
                if started or await asyncio.to_thread(_manifest_at, path) == manifest:
                    raise _vanished(path) from None
                # Replaced or deleted between reading the manifest and its first
                # part: read what is there now (KeyError if nothing).
                async for chunk in self.read(key, start, end):
                    yield chunk
                return
            started = True
            try:
                await part.seek(span.offset)
                async for chunk in _read_span(part, span.length):
                    yield chunk
            finally:
                await part.close()
