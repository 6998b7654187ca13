"""The store's directories, and installing finished files in them (renames, links, fsync)."""

from __future__ import annotations

import asyncio
import builtins
import os
import shutil
import uuid
from pathlib import Path

import aiofiles

from gateway.store.base import PreconditionFailed, StorageError
from gateway.store.file.disk import (
    _UPLOAD_ID,
    _fsync_dir,
    _manifest_at,
    _unlink_quietly,
    _write_file,
)
from gateway.store.keys import check_key
from gateway.store.manifest import Manifest


class FileLayout:
    """Paths under the root, temp files, and putting a finished file or manifest in place."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._parts = self.root / "parts"
        self._multipart = self.root / "multipart"
        self._tmp = self.root / "tmp"
        for directory in (self._objects, self._parts, self._multipart, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileStore(root={str(self.root)!r})"

    # -- paths ----------------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        return self._objects.joinpath(*check_key(key).split("/"))

    def _upload_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise KeyError(upload_id)
        return self._multipart / upload_id

    def _temp_path(self) -> Path:
        return self._tmp / uuid.uuid4().hex

    async def _write_temp(self, data: bytes | memoryview) -> tuple[Path, os.stat_result]:
        """Write ``data`` to a fresh temp file, fsynced; return its path and stat."""
        path = self._temp_path()
        try:
            async with aiofiles.open(path, "xb") as fh:
                await fh.write(data)
                await fh.flush()
                await asyncio.to_thread(os.fsync, fh.fileno())
                stat = await asyncio.to_thread(os.fstat, fh.fileno())
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, path)
            raise
        return path, stat

    def _install_as_manifest(
        self, files: builtins.list[Path], target: Path, if_absent: bool, key: str
    ) -> str:
        """Move non-empty ``files`` (on this file system) into a new parts dir behind a manifest."""
        parts_id = uuid.uuid4().hex
        directory = self._parts / parts_id
        directory.mkdir()
        installed = False
        temp = self._temp_path()
        try:
            parts: list[tuple[str, int]] = []
            for number, path in enumerate(files, start=1):
                name = f"{number:05d}"
                os.rename(path, directory / name)
                parts.append((name, os.stat(directory / name).st_size))
            manifest = Manifest(
                parts_id=parts_id, parts=tuple(parts), etag=f"{parts_id}-{len(parts)}"
            )
            self._write_manifest(manifest, temp, target, if_absent, key)
            installed = True
        finally:
            _unlink_quietly(temp)
            if not installed:
                shutil.rmtree(directory, ignore_errors=True)
        return manifest.etag

    def _write_manifest(
        self, manifest: Manifest, temp: Path, target: Path, if_absent: bool, key: str
    ) -> None:
        """Make the parts dir durable, then put ``manifest`` at ``target`` by way of ``temp``."""
        _fsync_dir(self._parts / manifest.parts_id)
        _fsync_dir(self._parts)
        _write_file(temp, manifest.encode())
        self._replace_object(temp, target, if_absent, key)

    def _replace_object(self, temp: Path, target: Path, if_absent: bool, key: str) -> None:
        """Install ``temp`` at ``target``; then drop the parts of the manifest it replaced.

        In that order, so a crash between leaves an orphan parts dir (swept
        later), never a manifest naming parts that are gone.
        """
        old = None if if_absent else _manifest_at(target)
        self._install(temp, target, if_absent, key)
        if old is not None:
            self._remove_parts(old.parts_id)

    def _remove_parts(self, parts_id: str) -> None:
        shutil.rmtree(self._parts / parts_id, ignore_errors=True)

    def _install(self, temp: Path, target: Path, if_absent: bool, key: str) -> None:
        """Move a finished temp file to ``target`` (link it, for ``if_absent``)."""
        conflict = StorageError(
            f"key {key!r} clashes with another key used as its prefix or below it "
            "(the file store cannot hold both 'a' and 'a/b')"
        )
        if target.is_dir():
            raise conflict
        for attempt in range(3):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise conflict from None
            try:
                if if_absent:
                    os.link(temp, target)  # atomic: FileExistsError if present
                else:
                    os.replace(temp, target)
                break
            except FileExistsError:
                raise PreconditionFailed(key) from None
            except NotADirectoryError:
                raise conflict from None
            except FileNotFoundError:
                # A delete pruned the empty parent directory meanwhile.
                if attempt == 2:
                    raise
        _fsync_dir(target.parent)
