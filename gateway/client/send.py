"""Sending one tus upload's bytes: PATCH requests from a file position to the end of a range.

By default the rest of a range goes as one request streamed from disk, like
``curl -T``, so the connection never waits between requests: the kernel copies
the file into the socket (:mod:`gateway.client.wire`) while the whole-file
hash reads it on a thread of its own. With ``chunk_size`` each request carries
one chunk held in memory and its SHA-256 (``Upload-Checksum``). After a
failure the server says where the upload stands (``HEAD``) and sending goes on
from there.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.client import retry
from gateway.client.outcome import Failed, reason
from gateway.client.progress import Meter
from gateway.client.reader import SLICE, Chunk, ChunkReader, FileHash, slices
from gateway.client.streams import Span
from gateway.client.tus import TUS, Tus, refused
from gateway.client.wire import FileConnection, direct


@dataclass(frozen=True)
class Job:
    """One file being uploaded: where it is, its state-file key, its size, its bar."""

    path: Path
    key: str
    size: int
    meter: Meter


@dataclass
class Stream:
    """One tus upload carrying ``span`` of the file: the whole file, or a partial."""

    index: int
    url: str
    span: Span
    meter: Meter
    stop: threading.Event = field(default_factory=threading.Event)
    ahead: bool = False  # read the next chunk while one is sent (a lone stream)


#: One request from a file position to another (``stream, offset, end``); None on a
#: network failure is raised as :class:`httpx.TransportError` instead.
Attempt = Callable[[Stream, int, int], httpx.Response]


class Sender:
    """Sends streams through ``tus``, in requests of ``chunk_size`` (0: one per range)."""

    def __init__(self, tus: Tus, chunk_size: int) -> None:
        self.tus = tus
        self.chunk_size = chunk_size

    def send(self, path: Path, stream: Stream, offset: int, whole: FileHash | None) -> str | None:
        """PATCH the stream's bytes from file position ``offset`` to the end of its span;
        ``whole`` (if any) ends up fed up to there. Returns the file id the server names
        when the upload completes the file (None for a partial)."""
        with contextlib.ExitStack() as stack:
            if self.chunk_size:
                reader = ChunkReader(path, stream.span.end, self.chunk_size, ahead=stream.ahead)
                attempt = self._chunked(stack.enter_context(reader), whole)
                return self._until_done(stream, offset, attempt)
            hashing = self._hash_behind(stack, whole, stream.span.end)
            if direct(stream.url):
                attempt = self._by_kernel(path, stack.enter_context(FileConnection()))
            else:
                attempt = self._by_httpx(path)
            file_id = self._until_done(stream, offset, attempt)
            if hashing is not None:
                hashing.result()
            return file_id

    def _hash_behind(
        self, stack: contextlib.ExitStack, whole: FileHash | None, end: int
    ) -> concurrent.futures.Future[None] | None:
        """Feed ``whole`` from disk up to ``end`` on a thread of its own, stopped when the
        send ends before it (a failure)."""
        if whole is None:
            return None
        halt = threading.Event()
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(1, "hash"))
        stack.callback(halt.set)  # runs before the pool's shutdown waits for it
        return pool.submit(whole.read_to, end, halt)

    def _until_done(self, stream: Stream, offset: int, attempt: Attempt) -> str | None:
        """Run ``attempt`` from ``offset`` until the span is sent, asking the server where
        the upload stands after each failure."""
        span = stream.span
        failures = 0
        while True:
            if stream.stop.is_set():
                raise Failed("stopped")
            end = span.end if not self.chunk_size else min(offset + self.chunk_size, span.end)
            try:
                response: httpx.Response | None = attempt(stream, offset, end)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 204:
                reached = int(response.headers.get("upload-offset", end - span.start))
                offset, failures = span.start + reached, 0
                stream.meter.at(stream.index, reached)
                if offset >= span.end:
                    file_id: str | None = response.headers.get("x-gateway-file-id")
                    return file_id
                continue
            if response is not None and not retry.retryable(response.status_code):
                raise refused(response)
            failures += 1
            if failures > self.tus.retries:
                raise Failed("network" if response is None else reason(response))
            self.tus.wait(failures - 1, response)
            before = offset
            offset, done = self.tus.where(stream.url, span)
            stream.meter.at(stream.index, offset - span.start)
            if offset >= span.end:
                return done
            if offset > before:
                failures = 0  # the cut request got bytes through: not a failing link

    def _headers(self, stream: Stream, offset: int, length: int) -> dict[str, str]:
        return {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset - stream.span.start),
            "Content-Length": str(length),
        }

    def _by_kernel(self, path: Path, connection: FileConnection) -> Attempt:
        """One PATCH of the file's bytes ``offset`` to ``end``, sent by ``sendfile``."""

        def attempt(stream: Stream, offset: int, end: int) -> httpx.Response:
            start = stream.span.start

            def sent(count: int) -> None:
                stream.meter.at(stream.index, offset + count - start)

            headers = self._headers(stream, offset, end - offset)
            with open(path, "rb") as body:
                return connection.patch(
                    stream.url, headers, body, offset, end - offset, sent, stream.stop
                )

        return attempt

    def _by_httpx(self, path: Path) -> Attempt:
        """One PATCH of the file's bytes ``offset`` to ``end`` through httpx (a proxy is
        configured), read from disk as sent."""

        def attempt(stream: Stream, offset: int, end: int) -> httpx.Response:
            start = stream.span.start

            def body() -> Generator[bytes, None, None]:
                position = offset
                for data in slices(path, offset, end, stream.stop):
                    yield data
                    position += len(data)
                    stream.meter.at(stream.index, position - start)

            content = body()
            try:
                headers = self._headers(stream, offset, end - offset)
                return self.tus.client.patch(stream.url, content=content, headers=headers)
            finally:
                content.close()

        return attempt

    def _chunked(self, reader: ChunkReader, whole: FileHash | None) -> Attempt:
        """One PATCH of one chunk held in memory, with its SHA-256 for the server to check."""

        def attempt(stream: Stream, offset: int, end: int) -> httpx.Response:
            chunk = reader.get(offset)
            if whole is not None:
                whole.cover(chunk.offset, chunk.data)
            return self._patch_chunk(stream, chunk)

        return attempt

    def _patch_chunk(self, stream: Stream, chunk: Chunk) -> httpx.Response:
        at = chunk.offset - stream.span.start
        headers = self._headers(stream, chunk.offset, len(chunk.data))
        headers["Upload-Checksum"] = f"sha256 {chunk.checksum}"

        def body() -> Iterator[bytes]:
            view = memoryview(chunk.data)
            for begin in range(0, len(view), SLICE):
                piece = view[begin : begin + SLICE]
                yield bytes(piece)
                stream.meter.at(stream.index, at + begin + len(piece))

        return self.tus.client.patch(stream.url, content=body(), headers=headers)
