"""Sending one tus upload's bytes: PATCH requests from a file position to the end of a range.

By default the rest of a range goes as one request streamed from disk, like
``curl -T``, so the connection never waits between requests; with
``chunk_size`` each request carries one chunk and its SHA-256
(``Upload-Checksum``). After a failure the server says where the upload stands
(``HEAD``) and sending goes on from there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.client import retry
from gateway.client.outcome import Failed
from gateway.client.progress import Meter
from gateway.client.reader import SLICE, Chunk, ChunkReader, FileHash, Hasher, slices
from gateway.client.streams import Span
from gateway.client.tus import TUS, Tus, reason, refused


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


class Sender:
    """Sends streams through ``tus``, in requests of ``chunk_size`` (0: one per range)."""

    def __init__(self, tus: Tus, chunk_size: int) -> None:
        self.tus = tus
        self.chunk_size = chunk_size

    def send(self, path: Path, stream: Stream, offset: int, whole: FileHash | None) -> str | None:
        """PATCH the stream's bytes from file position ``offset`` to the end of its span,
        feeding ``whole`` (if any) as they go. Returns the file id the server names when
        the upload completes the file (None for a partial)."""
        span = stream.span
        reader = (
            ChunkReader(path, span.end, self.chunk_size, ahead=stream.ahead)
            if self.chunk_size
            else None
        )
        failures = 0
        with reader if reader is not None else contextlib.nullcontext():
            while True:
                if stream.stop.is_set():
                    raise Failed("stopped")
                response, end = self._attempt(path, stream, offset, reader, whole)
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

    def _attempt(
        self,
        path: Path,
        stream: Stream,
        offset: int,
        reader: ChunkReader | None,
        whole: FileHash | None,
    ) -> tuple[httpx.Response | None, int]:
        """One PATCH from ``offset``: its response (None on a network error) and the file
        position it was meant to reach."""
        span = stream.span
        end = span.end if reader is None else min(offset + self.chunk_size, span.end)
        try:
            if reader is None:
                return self._patch_stream(path, stream, offset, end, whole), end
            return self._patch_chunk(stream, reader.get(offset), whole), end
        except httpx.TransportError:
            return None, end

    def _headers(self, stream: Stream, offset: int, length: int) -> dict[str, str]:
        return {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset - stream.span.start),
            "Content-Length": str(length),
        }

    def _patch_stream(
        self, path: Path, stream: Stream, offset: int, end: int, whole: FileHash | None
    ) -> httpx.Response:
        """One PATCH of the file's bytes ``offset`` to ``end``, read from disk as sent; the
        whole-file hash is fed on a worker thread meanwhile."""
        start = stream.span.start

        def body() -> Generator[bytes, None, None]:
            position = offset
            with Hasher(whole) as hasher:
                for data in slices(path, offset, end, stream.stop):
                    hasher.feed(position, data)
                    yield data
                    position += len(data)
                    stream.meter.at(stream.index, position - start)

        content = body()
        try:
            return self.tus.client.patch(
                stream.url, content=content, headers=self._headers(stream, offset, end - offset)
            )
        finally:
            content.close()

    def _patch_chunk(self, stream: Stream, chunk: Chunk, whole: FileHash | None) -> httpx.Response:
        """One PATCH of one chunk held in memory, with its SHA-256 for the server to check."""
        if whole is not None:
            whole.cover(chunk.offset, chunk.data)
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
