"""Multipart uploads in the file store: parts as files, completed into a manifest."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from gateway.store.base import MultipartInfo, Part, StorageError
from gateway.store.file.disk import (
    _UPLOAD_ID,
    _etag,
    _starts_with_magic,
    _unlink_quietly,
    _write_file,
)
from gateway.store.file.objects import FileObjects
from gateway.store.keys import check_key, check_prefix
from gateway.store.manifest import Manifest

MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10000
_PART_FILE = re.compile(r"^\d{5}$")
_META = "meta.json"


class FileMultipart(FileObjects):
    """Multipart uploads, all of their calls in one place."""

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        check_key(key)
        upload_id = uuid.uuid4().hex
        meta = {"key": key, "initiated": time.time(), "content_type": content_type}
        await asyncio.to_thread(self._upload_dir(upload_id).mkdir)
        temp, _ = await self._write_temp(json.dumps(meta).encode())
        await asyncio.to_thread(os.replace, temp, self._upload_dir(upload_id) / _META)
        return upload_id

    def _check_upload(self, key: str, upload_id: str) -> Path:
        """The upload's directory; KeyError if it is gone or belongs to another key."""
        directory = self._upload_dir(upload_id)
        try:
            meta = json.loads((directory / _META).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise KeyError(upload_id) from None
        if meta.get("key") != key:
            raise KeyError(upload_id)
        return directory

    async def upload_part(self, key: str, upload_id: str, number: int, data: memoryview) -> Part:
        check_key(key)
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part number must be 1..{MAX_PARTS}, got {number}")
        directory = await asyncio.to_thread(self._check_upload, key, upload_id)
        temp, stat = await self._write_temp(data)
        try:
            await asyncio.to_thread(os.replace, temp, directory / f"{number:05d}")
        except FileNotFoundError:
            raise KeyError(upload_id) from None  # aborted while the part was written
        finally:
            await asyncio.to_thread(_unlink_quietly, temp)
        return Part(number=number, size=stat.st_size, etag=_etag(stat))

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        check_key(key)
        return await asyncio.to_thread(self._list_parts, key, upload_id)

    def _list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        directory = self._check_upload(key, upload_id)
        parts: list[Part] = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            raise KeyError(upload_id) from None
        for name in names:
            if not _PART_FILE.match(name):
                continue
            try:
                stat = os.stat(directory / name)
            except FileNotFoundError:
                continue
            parts.append(Part(number=int(name), size=stat.st_size, etag=_etag(stat)))
        parts.sort(key=lambda part: part.number)
        return parts

    async def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[Part]) -> str:
        target = self._object_path(key)
        return await asyncio.to_thread(self._complete, key, upload_id, parts, target)

    def _complete(self, key: str, upload_id: str, parts: builtins.list[Part], target: Path) -> str:
        directory = self._check_upload(key, upload_id)
        if not parts:
            raise StorageError("completing a multipart upload needs at least one part")
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise StorageError("InvalidPart: a part number is listed twice")
        parts_id = uuid.uuid4().hex
        linked_dir = self._parts / parts_id
        linked_dir.mkdir()
        temp = self._temp_path()
        installed = False
        try:
            # Link each part and check the linked inode: a re-upload racing us
            # replaces the upload's name, never the file we hold.
            kept: list[tuple[str, int]] = []
            for index, part in enumerate(ordered):
                name = f"{part.number:05d}"
                try:
                    os.link(directory / name, linked_dir / name)
                except FileNotFoundError:
                    raise StorageError(f"InvalidPart: part {part.number} is not stored") from None
                stat = os.stat(linked_dir / name)
                if _etag(stat) != part.etag:
                    raise StorageError(f"InvalidPart: part {part.number} has a different ETag")
                if index < len(ordered) - 1 and stat.st_size < MIN_PART:
                    raise StorageError(
                        f"EntityTooSmall: part {part.number} is {stat.st_size} bytes; "
                        f"every part but the last must be at least {MIN_PART}"
                    )
                if stat.st_size == 0:
                    os.unlink(linked_dir / name)  # an empty last part adds nothing
                else:
                    kept.append((name, stat.st_size))
            if len(kept) <= 1 and not _starts_with_magic(linked_dir, kept):
                etag = self._install_plain(linked_dir, kept, temp, target, key)
            else:
                manifest = Manifest(
                    parts_id=parts_id, parts=tuple(kept), etag=f"{parts_id}-{len(kept)}"
                )
                self._write_manifest(manifest, temp, target, False, key)
                etag = manifest.etag
            installed = True
        finally:
            _unlink_quietly(temp)
            if not installed:
                shutil.rmtree(linked_dir, ignore_errors=True)
        self._remove_upload(directory)
        return etag

    def _install_plain(
        self,
        linked_dir: Path,
        kept: builtins.list[tuple[str, int]],
        temp: Path,
        target: Path,
        key: str,
    ) -> str:
        """Zero or one part: the object is an ordinary file, the part itself.

        It gets its own mtime (the completion's, and so its own ETag), but only
        once it is installed: until the upload is removed the part's inode is
        also the upload's, whose ETag a failed completion must leave alone.
        """
        if kept:
            os.rename(linked_dir / kept[0][0], temp)
        else:
            _write_file(temp, b"")
        os.rmdir(linked_dir)
        fd = os.open(temp, os.O_RDONLY)
        try:
            self._replace_object(temp, target, False, key)
            os.utime(fd)
            return _etag(os.fstat(fd))
        finally:
            os.close(fd)

    def _remove_upload(self, directory: Path) -> None:
        """Move the upload out of sight atomically, then delete it."""
        graveyard = self._temp_path()
        try:
            os.rename(directory, graveyard)
        except FileNotFoundError:
            return
        shutil.rmtree(graveyard, ignore_errors=True)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        check_key(key)
        try:
            directory = await asyncio.to_thread(self._check_upload, key, upload_id)
        except KeyError:
            return
        await asyncio.to_thread(self._remove_upload, directory)

    async def list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]:
        check_prefix(prefix)
        return await asyncio.to_thread(self._list_multipart, prefix)

    def _list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]:
        found: list[MultipartInfo] = []
        for name in os.listdir(self._multipart):
            if not _UPLOAD_ID.match(name):
                continue
            try:
                meta = json.loads((self._multipart / name / _META).read_text())
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue  # being created or removed
            key = meta.get("key")
            if isinstance(key, str) and key.startswith(prefix):
                found.append(
                    MultipartInfo(key=key, upload_id=name, initiated=float(meta["initiated"]))
                )
        found.sort(key=lambda info: (info.key, info.initiated))
        return found
