"""Reading the file to send, and its SHA-256: chunks, streamed slices, the whole-file hash.

The whole file's SHA-256 is what the server's receipt is checked against. It
is computed in file order (:class:`FileHash`): fed by the chunks as they are
sent in memory, or read from disk on a thread of its own while the kernel
sends a stream's bytes (:meth:`FileHash.read_to`) or while several streams go
at once and finish out of order (:func:`sha256_of`).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

from gateway.client.outcome import Failed

#: A streamed request reads and sends the file in slices of this size.
STREAM_SLICE = 1024 * 1024
#: A chunk held in memory is handed to the connection in slices of this size.
SLICE = 256 * 1024
HASH_BLOCK = 4 * 1024 * 1024


def shrank() -> Failed:
    return Failed("file-changed", "the file shrank while uploading")


class Chunk:
    """``data`` read at file position ``offset``, and its SHA-256 as tus wants it (base64)."""

    def __init__(self, offset: int, data: bytes) -> None:
        self.offset = offset
        self.data = data
        self.checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class FileHash:
    """The whole file's SHA-256, fed in order; gaps (a resume) are read from disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = hashlib.sha256()
        self.done = 0
        self.lock = threading.Lock()

    def cover(self, offset: int, data: bytes) -> None:
        """Feed the bytes at ``offset``: what was fed already is skipped, a gap read from disk."""
        with self.lock:
            if offset > self.done:
                self._read_up_to(offset, None)
            end = offset + len(data)
            if offset <= self.done < end:
                self.state.update(memoryview(data)[self.done - offset :])
                self.done = end

    def read_to(self, end: int, stop: threading.Event) -> None:
        """Feed the file's bytes up to ``end`` from disk (a stream sent by the kernel never
        passes through Python); ``stop`` ends it with ``Failed("stopped")``."""
        with self.lock:
            self._read_up_to(end, stop)

    def _read_up_to(self, offset: int, stop: threading.Event | None) -> None:
        if self.done >= offset:
            return
        buffer = bytearray(min(HASH_BLOCK, offset - self.done))
        view = memoryview(buffer)
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.done)
            while self.done < offset:
                if stop is not None and stop.is_set():
                    raise Failed("stopped")
                count = fh.readinto(view[: min(len(view), offset - self.done)])
                if not count:
                    raise shrank()
                self.state.update(view[:count])
                self.done += count

    def finish(self, size: int) -> str:
        """The hex digest of the first ``size`` bytes (reading what was not fed)."""
        self.cover(size, b"")
        return self.state.hexdigest()


def sha256_of(path: Path, size: int, stop: threading.Event) -> str:
    """The first ``size`` bytes' SHA-256, read in order (streams finish out of order)."""
    whole = FileHash(path)
    whole.read_to(size, stop)
    return whole.state.hexdigest()


def slices(path: Path, offset: int, end: int, stop: threading.Event) -> Iterator[bytes]:
    """The file's bytes ``offset`` to ``end`` read from disk in :data:`STREAM_SLICE`
    pieces, as a streamed request sends them; stops with ``Failed("stopped")``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        position = offset
        while position < end:
            if stop.is_set():
                raise Failed("stopped")
            data = fh.read(min(STREAM_SLICE, end - position))
            if not data:
                raise shrank()
            yield data
            position += len(data)


class ChunkReader:
    """Chunks of one range of the file. With ``ahead``, the next chunk is read from disk
    and hashed on a worker thread while this one is sent."""

    def __init__(self, path: Path, end: int, chunk_size: int, *, ahead: bool) -> None:
        self.path = path
        self.end = end
        self.chunk_size = chunk_size
        self.pool = concurrent.futures.ThreadPoolExecutor(1, "prefetch") if ahead else None
        self.next: concurrent.futures.Future[Chunk] | None = None
        self.next_offset = -1

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def get(self, offset: int) -> Chunk:
        pending, self.next = self.next, None
        if pending is not None and self.next_offset == offset:
            chunk = pending.result()
        else:
            chunk = self._read(offset)
        following = offset + len(chunk.data)
        if self.pool is not None and following < self.end:
            self.next_offset = following
            self.next = self.pool.submit(self._read, following)
        return chunk

    def _read(self, offset: int) -> Chunk:
        want = min(self.chunk_size, self.end - offset)
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(want)
        if len(data) < want:
            raise shrank()
        return Chunk(offset, data)
