"""The file store: :class:`ObjectStore` in a local directory.

The embedded default, and the reference the S3 store is tested against, so it
keeps S3's rules where code written against it could otherwise pass here and
fail on S3 (parts of at least 5 MiB except the last, part ETags checked on
completion, ``if_absent`` atomic).

Layout under ``root``::

    objects/<key>                 whole objects, one file each
    multipart/<upload_id>/meta.json   {"key": ..., "initiated": ...}
    multipart/<upload_id>/00001   one file per part
    tmp/                          files being written; renamed into place

Every write lands in ``tmp/`` first, is fsynced, and is renamed into place, so
readers and listings never see a half-written file and a crash leaves only
junk in ``tmp/``. Data goes through aiofiles; directory work runs in worker
threads. An ETag is derived from the file's inode, size and mtime: opaque,
and different for every write.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG

import aiofiles

from gateway.store.base import (
    MultipartInfo,
    ObjectInfo,
    Part,
    PreconditionFailed,
    StorageError,
)
from gateway.store.keys import check_key, check_prefix

READ_CHUNK = 1024 * 1024
MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10000
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_FILE = re.compile(r"^\d{5}$")
_META = "meta.json"


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_into(src_fd: int, dst_fd: int, size: int) -> None:
    """Append ``size`` bytes of ``src_fd`` to ``dst_fd``, in the kernel when it can."""
    remaining = size
    offset = 0
    try:
        while remaining > 0:
            copied = os.copy_file_range(src_fd, dst_fd, remaining, offset)
            if copied == 0:
                break
            offset += copied
            remaining -= copied
    except OSError:
        pass  # no copy_file_range here (or across file systems): copy by hand
    if remaining > 0:
        os.lseek(src_fd, offset, os.SEEK_SET)
        with open(src_fd, "rb", closefd=False) as src, open(dst_fd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst, READ_CHUNK)


class FileStore:
    """:class:`~gateway.store.base.ObjectStore` in a directory on the local disk."""

    name = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._multipart = self.root / "multipart"
        self._tmp = self.root / "tmp"
        for directory in (self._objects, self._multipart, self._tmp):
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

    # -- whole objects ----------------------------------------------------------------

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        target = self._object_path(key)
        temp, stat = await self._write_temp(data)
        try:
            await asyncio.to_thread(self._install, temp, target, if_absent, key)
        finally:
            await asyncio.to_thread(_unlink_quietly, temp)
        return _etag(stat)

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

    async def get(self, key: str) -> bytes | None:
        path = self._object_path(key)
        try:
            async with aiofiles.open(path, "rb") as fh:
                data: bytes = await fh.read()
                return data
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    async def head(self, key: str) -> ObjectInfo | None:
        stat = await asyncio.to_thread(_stat_file, self._object_path(key))
        if stat is None:
            return None
        return ObjectInfo(key=key, size=stat.st_size, etag=_etag(stat), last_modified=stat.st_mtime)

    async def delete(self, key: str) -> None:
        path = self._object_path(key)
        await asyncio.to_thread(self._delete, path)

    def _delete(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
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
                    stat = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # deleted while listing
                found.append(
                    ObjectInfo(
                        key=key, size=stat.st_size, etag=_etag(stat), last_modified=stat.st_mtime
                    )
                )
        found.sort(key=lambda info: info.key)
        return found

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream a byte range; a missing key raises KeyError, a range past the end is empty."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range start={start} end={end}")
        path = self._object_path(key)
        try:
            fh = await aiofiles.open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyError(key) from None
        try:
            await fh.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk: bytes = await fh.read(size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await fh.close()

    # -- multipart ----------------------------------------------------------------------

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
        # Open every part first: a concurrent abort or re-upload cannot change
        # what we copy once we hold the file descriptors.
        fds: list[tuple[int, int]] = []
        temp = self._temp_path()
        try:
            for index, part in enumerate(ordered):
                try:
                    fd = os.open(directory / f"{part.number:05d}", os.O_RDONLY)
                except FileNotFoundError:
                    raise StorageError(f"InvalidPart: part {part.number} is not stored") from None
                stat = os.fstat(fd)
                fds.append((fd, stat.st_size))
                if _etag(stat) != part.etag:
                    raise StorageError(f"InvalidPart: part {part.number} has a different ETag")
                if index < len(ordered) - 1 and stat.st_size < MIN_PART:
                    raise StorageError(
                        f"EntityTooSmall: part {part.number} is {stat.st_size} bytes; "
                        f"every part but the last must be at least {MIN_PART}"
                    )
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                for fd, size in fds:
                    _copy_into(fd, out, size)
                os.fsync(out)
                stat = os.fstat(out)
            finally:
                os.close(out)
            self._install(temp, target, False, key)
        finally:
            for fd, _ in fds:
                os.close(fd)
            _unlink_quietly(temp)
        self._remove_upload(directory)
        return _etag(stat)

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

    # -- lifecycle --------------------------------------------------------------------------

    async def ping(self) -> None:
        ok = await asyncio.to_thread(os.access, self._objects, os.W_OK | os.X_OK)
        if not ok:
            raise StorageError(f"the store directory {self._objects} is not writable")

    async def close(self) -> None:
        return None


def _stat_file(path: Path) -> os.stat_result | None:
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return stat if S_ISREG(stat.st_mode) else None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
