"""Joining objects in the file store by reference: links behind one new manifest."""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import uuid
from pathlib import Path

from gateway.store.base import Part, StorageError
from gateway.store.file.disk import _MISSING, _etag, _open_object, _unlink_quietly, _write_file
from gateway.store.file.multipart import MAX_PARTS, FileMultipart
from gateway.store.keys import check_key
from gateway.store.manifest import Manifest

MAX_SEGMENTS = 99999  # what a manifest's five-digit file names can number


class FileCompose(FileMultipart):
    """:meth:`compose`: no byte copied."""

    async def compose(
        self, key: str, sources: builtins.list[str], content_type: str | None = None
    ) -> str:
        """Join objects by reference: their files are linked behind one new manifest.

        No byte is copied: a plain source is one segment (its file), a
        manifest source gives its parts. Links, so the sources stay whole and
        deleting them later leaves the new object's files in place.
        """
        target = self._object_path(key)
        paths = [(source, self._object_path(source)) for source in sources]
        return await asyncio.to_thread(self._compose, key, paths, target)

    def _compose(self, key: str, sources: builtins.list[tuple[str, Path]], target: Path) -> str:
        parts_id = uuid.uuid4().hex
        directory = self._parts / parts_id
        directory.mkdir()
        temp = self._temp_path()
        installed = False
        try:
            segments: list[tuple[str, int]] = []
            for source, path in sources:
                for origin, size, inode in self._segments(source, path):
                    if size == 0:
                        continue
                    if len(segments) >= MAX_SEGMENTS:
                        raise StorageError(f"composing {key!r}: more than {MAX_SEGMENTS} segments")
                    name = f"{len(segments) + 1:05d}"
                    try:
                        os.link(origin, directory / name)
                    except FileNotFoundError:
                        raise KeyError(source) from None  # replaced or deleted meanwhile
                    linked = os.stat(directory / name)
                    if linked.st_size != size or inode not in (None, linked.st_ino):
                        raise KeyError(source)  # a plain source replaced meanwhile
                    segments.append((name, size))
            if not segments:
                shutil.rmtree(directory, ignore_errors=True)
                _write_file(temp, b"")
                self._replace_object(temp, target, False, key)
                installed = True
                return _etag(os.stat(target))
            manifest = Manifest(
                parts_id=parts_id, parts=tuple(segments), etag=f"{parts_id}-{len(segments)}"
            )
            self._write_manifest(manifest, temp, target, False, key)
            installed = True
            return manifest.etag
        finally:
            _unlink_quietly(temp)
            if not installed:
                shutil.rmtree(directory, ignore_errors=True)

    def _segments(self, source: str, path: Path) -> builtins.list[tuple[Path, int, int | None]]:
        """The files holding object ``source``, in order: path, size and (for a plain
        object, whose name a put may take over) the inode; KeyError if absent.

        A manifest's part files are never rewritten, only removed with their dir.
        """
        try:
            fd, stat, manifest = _open_object(path)
        except _MISSING:
            raise KeyError(source) from None
        os.close(fd)
        if manifest is None:
            return [(path, stat.st_size, stat.st_ino)]
        directory = self._parts / manifest.parts_id
        return [(directory / name, size, None) for name, size in manifest.parts]

    async def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> Part:
        """Part ``number`` becomes the object ``source_key``: a plain object's file is
        linked as the part; a manifest's files are copied in the kernel
        (``copy_file_range``, a reflink where the file system has them), so no byte
        passes through the gateway."""
        check_key(key)
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part number must be 1..{MAX_PARTS}, got {number}")
        source = self._object_path(source_key)
        directory = await asyncio.to_thread(self._check_upload, key, upload_id)
        return await asyncio.to_thread(self._copy_part, directory, number, source_key, source)

    def _copy_part(self, directory: Path, number: int, source_key: str, source: Path) -> Part:
        temp = self._temp_path()
        try:
            try:
                fd, stat, manifest = _open_object(source)
            except _MISSING:
                raise KeyError(source_key) from None
            try:
                if manifest is None:
                    os.link(source, temp)
                    if os.stat(temp).st_ino != stat.st_ino:
                        raise KeyError(source_key)  # replaced meanwhile
                else:
                    self._concatenate(manifest, temp, source_key)
            finally:
                os.close(fd)
            target = directory / f"{number:05d}"
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                raise KeyError(directory.name) from None  # aborted meanwhile
            written = os.stat(target)
        finally:
            _unlink_quietly(temp)
        return Part(number=number, size=written.st_size, etag=_etag(written))

    def _concatenate(self, manifest: Manifest, temp: Path, source_key: str) -> None:
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for name, size in manifest.parts:
                try:
                    part = os.open(self._parts / manifest.parts_id / name, os.O_RDONLY)
                except FileNotFoundError:
                    raise KeyError(source_key) from None  # deleted meanwhile
                try:
                    left = size
                    while left > 0:
                        copied = os.copy_file_range(part, out, left)
                        if copied == 0:
                            raise KeyError(source_key)  # shorter than its manifest says
                        left -= copied
                finally:
                    os.close(part)
            os.fsync(out)
        finally:
            os.close(out)
