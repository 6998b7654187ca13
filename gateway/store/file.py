"""The file store: :class:`ObjectStore` in a local directory.

The embedded default, and the reference the S3 store is tested against, so it
keeps S3's rules where code written against it could otherwise pass here and
fail on S3 (parts of at least 5 MiB except the last, part ETags checked on
completion, ``if_absent`` atomic).

Layout under ``root``::

    objects/<key>                 one file per object: its bytes, or a manifest
    parts/<id>/00001              the parts of a completed multipart object
    multipart/<upload_id>/meta.json   {"key": ..., "initiated": ...}
    multipart/<upload_id>/00001   one file per part
    tmp/                          files being written; renamed into place

Every write lands in ``tmp/`` first, is fsynced, and is renamed into place, so
readers and listings never see a half-written file and a crash leaves only
junk in ``tmp/``. Data goes through aiofiles; directory work runs in worker
threads. An ETag is derived from the file's inode, size and mtime: opaque,
and different for every write.

Completing a multipart upload copies nothing: the part files are hard-linked
into ``parts/<id>/`` and the object's path gets a small manifest naming them
(:mod:`gateway.store.manifest`), whose ETag is ``<id>-<parts>``. A one-part
upload becomes an ordinary file the same way. Links, not renames, so the upload
stays whole until the manifest is in place: a crash before leaves an orphan
``parts/<id>/`` (see :meth:`FileStore.housekeep`), never a broken upload.
Replacing or deleting a manifest object swaps the manifest out first and then
removes its parts, so a crash between leaves an orphan, never a dangling name.
Composing objects (tus concatenation) works the same way: the sources' files
(a plain object's file, a manifest's parts) are linked into a new parts dir
behind a new manifest, so joining a 1 GiB upload's partials copies no byte.
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
from stat import S_ISDIR, S_ISREG

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedReader

from gateway.store.base import (
    MultipartInfo,
    ObjectInfo,
    Part,
    PreconditionFailed,
    StorageError,
)
from gateway.store.keys import check_key, check_prefix
from gateway.store.manifest import MAGIC, MAX_SIZE, Manifest

READ_CHUNK = 1024 * 1024
MIN_PART = 5 * 1024 * 1024
MAX_PARTS = 10000
MAX_SEGMENTS = 99999  # what a manifest's five-digit file names can number
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_FILE = re.compile(r"^\d{5}$")
_META = "meta.json"
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


class FileStore:
    """:class:`~gateway.store.base.ObjectStore` in a directory on the local disk."""

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

    # -- whole objects ----------------------------------------------------------------

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

    # -- composing -----------------------------------------------------------------------------

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

    # -- upkeep -------------------------------------------------------------------------------

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
