"""Plain functions on the store's files: ETags, fsync, opening objects and manifests."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from stat import S_ISREG

from aiofiles.threadpool.binary import AsyncBufferedReader

from gateway.store.base import ObjectInfo, StorageError
from gateway.store.manifest import MAGIC, MAX_SIZE, Manifest

READ_CHUNK = 1024 * 1024
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_object(path: Path) -> tuple[int, os.stat_result, Manifest | None]:
    """Open an object file: its descriptor, stat, and manifest if it is one.

    Raises FileNotFoundError for anything that is not a regular file, and
    StorageError for a file that starts like a manifest but does not parse.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise FileNotFoundError(path)
        if os.pread(fd, len(MAGIC), 0) != MAGIC:
            return fd, stat, None
        size = min(stat.st_size, len(MAGIC) + MAX_SIZE)
        return fd, stat, _parse_manifest(os.pread(fd, size, 0), path)
    except BaseException:
        os.close(fd)
        raise


def _parse_manifest(data: bytes, path: Path) -> Manifest:
    """Decode a manifest read from ``path``; StorageError if it is broken or too big."""
    if len(data) >= len(MAGIC) + MAX_SIZE:
        raise StorageError(f"object file {path} starts like a manifest but is too big")
    try:
        return Manifest.decode(data)
    except ValueError as exc:
        raise StorageError(f"object file {path} holds a broken manifest: {exc}") from None


def _manifest_at(path: Path) -> Manifest | None:
    """The manifest stored at ``path``, or None (absent, ordinary object, or unreadable)."""
    try:
        fd, _, manifest = _open_object(path)
    except (*_MISSING, StorageError):
        return None
    os.close(fd)
    return manifest


async def _read_span(fh: AsyncBufferedReader, length: int | None) -> AsyncIterator[bytes]:
    """Up to ``length`` bytes (None = to the end) from ``fh``'s position, in chunks."""
    remaining = length
    while remaining is None or remaining > 0:
        size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
        chunk: bytes = await fh.read(size)
        if not chunk:
            break
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def _describe(path: Path, key: str) -> ObjectInfo:
    """What HEAD and LIST report; FileNotFoundError if there is no object file."""
    fd, stat, manifest = _open_object(path)
    os.close(fd)
    if manifest is None:
        return ObjectInfo(key=key, size=stat.st_size, etag=_etag(stat), last_modified=stat.st_mtime)
    return ObjectInfo(key=key, size=manifest.size, etag=manifest.etag, last_modified=stat.st_mtime)


def _starts_with_magic(directory: Path, kept: list[tuple[str, int]]) -> bool:
    """Whether the only part begins like a manifest (then it cannot stand alone)."""
    if not kept:
        return False
    with open(directory / kept[0][0], "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _vanished(path: Path) -> StorageError:
    return StorageError(f"the parts of {path} are gone: it was deleted or replaced meanwhile")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
