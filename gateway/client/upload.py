"""``gateway upload URL FILE...``: a resumable tus client for scripts and terminals.

A file goes up as one upload or, to a gateway far enough away that one
connection cannot fill the path (``--streams auto``, see
:mod:`gateway.client.streams`), as up to ``streams`` contiguous ranges sent at
the same time as tus partial uploads, which a final upload (tus
concatenation) then joins. Each stream sends its range as one PATCH read from
disk as it goes, like ``curl -T`` (or, with ``chunk_size``, in requests of
that size each with ``Upload-Checksum: sha256``). ``parallel`` files go up at
once. Failures (network errors, 5xx, 409, 423, 429, 460) are retried with
exponential backoff and jitter, honouring ``Retry-After``; after each failure
the client asks the server (HEAD) where that upload stands and goes on from
there.

Re-running the same command resumes: the tus URLs of every unfinished file
(its upload, or its partials and final) are kept in a state file under the
file's fingerprint (see :mod:`gateway.client.state`). The whole file's
SHA-256 is computed locally, in file order, and compared with the server's
receipt at the end.

Output: a progress bar per file on stderr, and on stdout one final line per
file that scripts can parse::

    OK <sha256> <size> <filename>
    FAILED <reason> <filename>

Exit status 0 only if every file is OK.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import mimetypes
import os
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gateway.client import retry, streams
from gateway.client.state import StateFile, fingerprint, state_dir
from gateway.client.streams import AUTO_STREAMS, Offer, Part, Span

TUS = {"Tus-Resumable": "1.0.0"}
SLICE = 256 * 1024
# A streamed request reads and sends the file in slices of this size.
STREAM_SLICE = 1024 * 1024
# Slices read but not yet hashed, at most (the hash runs on its own thread).
HASH_DEPTH = 8
HASH_BLOCK = 4 * 1024 * 1024
# Whole-file requests start partial uploads on multiples of this (their S3 parts stay whole).
ALIGN = 16 * 1024 * 1024
POLL_INTERVAL = 1.0
MAX_POLL_INTERVAL = 10.0
TIMEOUT = httpx.Timeout(connect=15.0, read=300.0, write=120.0, pool=60.0)


class Failed(Exception):
    """The upload of one file failed for good; ``reason`` is one word for the final line."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    sha256: str = ""
    size: int = 0
    reason: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK {self.sha256} {self.size} {self.name}"
        return f"FAILED {self.reason} {self.name}"


def link_of(url: str) -> str:
    """The upload link ``.../u/{token}`` from what a user pastes (link, tus endpoint, slash)."""
    link = url.strip().rstrip("/")
    if link.endswith("/tus"):
        link = link[: -len("/tus")]
    if "/u/" not in link:
        raise Failed("bad-url", f"not an upload link: {url}")
    return link


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")


class _Chunk:
    def __init__(self, offset: int, data: bytes) -> None:
        self.offset = offset
        self.data = data
        self.checksum = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class _FileHash:
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
                with open(self.path, "rb") as fh:
                    fh.seek(self.done)
                    while self.done < offset:
                        block = fh.read(min(8 << 20, offset - self.done))
                        if not block:
                            raise Failed("file-changed", "the file shrank while uploading")
                        self.state.update(block)
                        self.done += len(block)
            end = offset + len(data)
            if offset <= self.done < end:
                self.state.update(memoryview(data)[self.done - offset :])
                self.done = end

    def finish(self, size: int) -> str:
        self.cover(size, b"")
        return self.state.hexdigest()


class _Hasher:
    """Feeds a :class:`_FileHash` on one worker thread, in order, while the caller sends.

    hashlib lets go of the GIL on large buffers, so hashing and sending overlap; at
    most :data:`HASH_DEPTH` slices wait, which bounds the memory it holds.
    """

    def __init__(self, whole: _FileHash | None) -> None:
        self.whole = whole
        self.pool = None if whole is None else concurrent.futures.ThreadPoolExecutor(1, "hash")
        self.pending: deque[concurrent.futures.Future[None]] = deque()

    def __enter__(self) -> _Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            while self.pending:
                self.pending.popleft().result()

    def feed(self, offset: int, data: bytes) -> None:
        if self.pool is None or self.whole is None:
            return
        self.pending.append(self.pool.submit(self.whole.cover, offset, data))
        while len(self.pending) > HASH_DEPTH:
            self.pending.popleft().result()


def _sha256_of(path: Path, size: int, stop: threading.Event) -> str:
    """The first ``size`` bytes' SHA-256, read in order (streams finish out of order)."""
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while done < size:
            if stop.is_set():
                raise Failed("stopped")
            block = fh.read(min(HASH_BLOCK, size - done))
            if not block:
                raise Failed("file-changed", "the file shrank while uploading")
            digest.update(block)
            done += len(block)
    return digest.hexdigest()


class _Reader:
    """Chunks of one range of the file. With ``ahead``, the next chunk is read from disk
    and hashed on a worker thread while this one is sent."""

    def __init__(self, path: Path, end: int, chunk_size: int, *, ahead: bool) -> None:
        self.path = path
        self.end = end
        self.chunk_size = chunk_size
        self.pool = concurrent.futures.ThreadPoolExecutor(1, "prefetch") if ahead else None
        self.next: concurrent.futures.Future[_Chunk] | None = None
        self.next_offset = -1

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def get(self, offset: int) -> _Chunk:
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

    def _read(self, offset: int) -> _Chunk:
        want = min(self.chunk_size, self.end - offset)
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(want)
        if len(data) < want:
            raise Failed("file-changed", "the file shrank while uploading")
        return _Chunk(offset, data)


class _Meter:
    """One progress bar per file: the sum of what each of its streams has sent."""

    def __init__(self, progress: Progress | None, name: str, size: int) -> None:
        self.progress = progress
        self.name = name
        self.task: TaskID | None = None if progress is None else progress.add_task(name, total=size)
        self.sent: dict[int, int] = {}
        self.lock = threading.Lock()

    def at(self, stream: int, sent: int) -> None:
        if self.progress is None or self.task is None:
            return
        with self.lock:
            self.sent[stream] = sent
            total = sum(self.sent.values())
            self.progress.update(self.task, completed=total)

    def note(self, text: str = "") -> None:
        """Say what the file is waiting for next to its name ("" to clear it)."""
        if self.progress is not None and self.task is not None:
            shown = f"{self.name} ({text})" if text else self.name
            self.progress.update(self.task, description=shown)


@dataclass(frozen=True)
class _Job:
    """One file being uploaded: where it is, its state-file key, its size, its bar."""

    path: Path
    key: str
    size: int
    meter: _Meter


@dataclass
class _Stream:
    """One tus upload carrying ``span`` of the file: the whole file, or a partial."""

    index: int
    url: str
    span: Span
    meter: _Meter
    stop: threading.Event = field(default_factory=threading.Event)
    ahead: bool = False  # read the next chunk while one is sent (a lone stream)


def _metadata(path: Path) -> str:
    metadata = f"filename {_b64(path.name)}"
    kind, _ = mimetypes.guess_type(path.name)
    if kind:
        metadata += f",filetype {_b64(kind)}"
    return metadata


class _Uploader:
    def __init__(
        self,
        client: httpx.Client,
        link: str,
        states: StateFile,
        progress: Progress | None,
        *,
        chunk_size: int,
        retries: int,
        streams: int | None = 1,
    ) -> None:
        self.client = client
        self.link = link
        self.endpoint = f"{link}/tus/"
        self.states = states
        self.progress = progress
        self.chunk_size = chunk_size
        self.retries = retries
        self.streams = streams
        self._offer: Offer | None = None
        self._asked = threading.Lock()

    # -- requests with retries ------------------------------------------------------

    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = retry.backoff(attempt)
        if response is not None:
            hinted = retry.retry_after(response.headers.get("retry-after"), time.time())
            if hinted is not None:
                delay = min(max(hinted, 0.1), retry.MAX_DELAY * 5)
        time.sleep(delay)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on transient failure (network errors, 5xx, 423, 429...)."""
        last = ""
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self.client.request(method, url, **kwargs)
                if not retry.retryable(response.status_code) or response.status_code == 409:
                    return response
                last = f"http-{response.status_code}"
            except httpx.TransportError as exc:
                last = "network"
                if attempt == self.retries:
                    raise Failed("network", str(exc)) from exc
            if attempt < self.retries:
                self._wait(attempt, response)
        raise Failed(last or "network")

    def _server_offer(self) -> Offer:
        """What the server's ``OPTIONS`` says (asked once per run), with the round trip:
        the shortest of three answers, the later ones on the connection the first opened."""
        with self._asked:
            if self._offer is None:
                response = self._request("OPTIONS", self.endpoint, headers=TUS)
                if response.status_code in (200, 204):
                    rtt = response.elapsed.total_seconds()
                    for _ in range(2):
                        again = self._request("OPTIONS", self.endpoint, headers=TUS)
                        rtt = min(rtt, again.elapsed.total_seconds())
                    headers = response.headers
                    self._offer = Offer.parse(
                        headers.get("tus-extension"), headers.get("tus-max-size"), rtt
                    )
                else:
                    self._offer = Offer(concatenation=False)
            return self._offer

    # -- one file -------------------------------------------------------------------

    def upload(self, path: Path, name: str) -> Result:
        size = path.stat().st_size
        job = _Job(path, fingerprint(path, self.link), size, _Meter(self.progress, name, size))
        file_id, digest = self._transfer(job)
        try:
            self._check_receipt(file_id, size, digest)
        finally:
            self.states.drop(job.key)
        return Result(name=name, ok=True, sha256=digest, size=size)

    def _transfer(self, job: _Job) -> tuple[str, str]:
        """Resume what the state file remembers, else start: the file id and SHA-256."""
        entry = self.states.get(job.key) or {}
        parts = streams.read_parts(entry, job.size, self.endpoint)
        if parts is not None:
            resumed = self._resume_concat(job, parts, entry)
            if resumed is not None:
                return resumed
        elif (single := self._resume_single(job, entry)) is not None:
            return self._single(job, *single)
        spans = streams.choose(
            job.size, streams=self.streams, chunk_size=self.chunk_size or ALIGN,
            offer=self._server_offer,
        )  # fmt: skip
        if len(spans) > 1:
            parts = [Part(self._create_partial(span), span) for span in spans]
            self._remember(job, streams.parts_entry(parts))
            return self._concat(job, parts, offsets=[0] * len(parts))
        url, file_id = self._create(job)
        self._remember(job, {"url": url})
        return self._single(job, url, 0, file_id)

    def _remember(self, job: _Job, entry: dict[str, Any]) -> None:
        about = {"file": str(job.path.resolve()), "size": job.size, "at": time.time()}
        self.states.put(job.key, {**entry, **about})

    # -- one upload for the whole file ----------------------------------------------

    def _resume_single(
        self, job: _Job, entry: dict[str, Any]
    ) -> tuple[str, int, str | None] | None:
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(self.endpoint):
            return None
        response = self._request("HEAD", url, headers=TUS)
        length = response.headers.get("upload-length")
        offset_text = response.headers.get("upload-offset", "")
        if response.status_code != 200 or length != str(job.size) or not offset_text.isdigit():
            self.states.drop(job.key)  # 404/410: gone or expired, start over
            return None
        return url, int(offset_text), response.headers.get("x-gateway-file-id")

    def _create(self, job: _Job) -> tuple[str, str | None]:
        headers = {**TUS, "Upload-Length": str(job.size), "Upload-Metadata": _metadata(job.path)}
        response = self._request("POST", self.endpoint, headers=headers)
        if response.status_code != 201 or "location" not in response.headers:
            raise Failed(_reason(response), _message(response))
        return response.headers["location"], response.headers.get("x-gateway-file-id")

    def _single(self, job: _Job, url: str, offset: int, file_id: str | None) -> tuple[str, str]:
        job.meter.at(0, offset)
        whole = _FileHash(job.path)
        if file_id is None:
            stream = _Stream(0, url, Span(0, job.size), job.meter, ahead=True)
            file_id = self._send(job.path, stream, offset, whole)
            if not file_id:
                raise Failed("no-receipt", "the server did not name the file")
        return file_id, whole.finish(job.size)

    # -- partial uploads joined by a final one (tus concatenation) ------------------

    def _resume_concat(
        self, job: _Job, parts: list[Part], entry: dict[str, Any]
    ) -> tuple[str, str] | None:
        """Continue remembered partials, or wait for their final upload. None when the
        server no longer has them, after forgetting them: the file starts over."""
        final = streams.read_final(entry, self.endpoint)
        if final is not None:
            if self._request("HEAD", final, headers=TUS).status_code == 200:
                return self._concat(job, parts, final=final)
        else:
            offsets = self._part_offsets(parts)
            present = [offset for offset in offsets or [] if offset is not None]
            if len(present) == len(parts):
                return self._concat(job, parts, offsets=present)
            if offsets is not None:
                # Gone: the server joined them already (the answer to our final POST was
                # lost, and the same POST now names that file) or they expired.
                response = self._post_final(job, parts)
                if response.status_code not in (400, 404, 410):
                    final, file_id = _final_of(response)
                    return self._concat(job, parts, final=final, file_id=file_id)
        self._abandon(job.key, parts)
        return None

    def _part_offsets(self, parts: list[Part]) -> list[int | None] | None:
        """Where each partial stands (None for one the server no longer has), or None
        if one is not what we remember."""
        offsets: list[int | None] = []
        for part in parts:
            response = self._request("HEAD", part.url, headers=TUS)
            if response.status_code in (404, 410):
                offsets.append(None)
                continue
            length = response.headers.get("upload-length")
            offset_text = response.headers.get("upload-offset", "")
            if response.status_code != 200 or length != str(part.span.length):
                return None
            if not offset_text.isdigit():
                return None
            offsets.append(int(offset_text))
        return offsets

    def _abandon(self, key: str, parts: list[Part]) -> None:
        """Forget remembered partials and ask the server to remove what is left of them
        (best effort: the server also sweeps them when the link expires)."""
        self.states.drop(key)
        for part in parts:
            try:
                self.client.delete(part.url, headers=TUS)
            except httpx.HTTPError:
                pass

    def _create_partial(self, span: Span) -> str:
        headers = {**TUS, "Upload-Concat": "partial", "Upload-Length": str(span.length)}
        response = self._request("POST", self.endpoint, headers=headers)
        if response.status_code != 201 or "location" not in response.headers:
            raise Failed(_reason(response), _message(response))
        return response.headers["location"]

    def _concat(
        self,
        job: _Job,
        parts: list[Part],
        *,
        offsets: list[int] | None = None,
        final: str | None = None,
        file_id: str | None = None,
    ) -> tuple[str, str]:
        """Send the partials from ``offsets`` and create the final upload (unless it
        exists), wait for the file; the whole file is hashed in order meanwhile."""
        stop = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(len(parts) + 1, "stream") as pool:
            hashing = pool.submit(_sha256_of, job.path, job.size, stop)
            try:
                if final is None:
                    self._send_parts(job, parts, offsets or [0] * len(parts), pool, stop)
                    final, file_id = _final_of(self._post_final(job, parts))
                for index, part in enumerate(parts):
                    job.meter.at(index, part.span.length)
                if file_id is None:
                    self._remember(job, streams.parts_entry(parts, final))
                    job.meter.note("assembling")
                    file_id = self._await_final(final)
                    job.meter.note()
                return file_id, hashing.result()
            except BaseException:
                stop.set()
                raise

    def _send_parts(
        self,
        job: _Job,
        parts: list[Part],
        offsets: list[int],
        pool: concurrent.futures.Executor,
        stop: threading.Event,
    ) -> None:
        """Every partial at once, each in order from its offset; the first failure stops
        the others (after their current chunk) and is raised."""
        futures: list[concurrent.futures.Future[str | None]] = []
        for index, (part, offset) in enumerate(zip(parts, offsets, strict=True)):
            stream = _Stream(index, part.url, part.span, job.meter, stop)
            job.meter.at(index, offset)
            if offset < part.span.length:
                start = part.span.start + offset
                futures.append(pool.submit(self._send, job.path, stream, start, None))
        if not futures:
            return
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in futures:
            if future in done and (error := future.exception()) is not None:
                stop.set()
                concurrent.futures.wait(futures)
                raise error

    def _post_final(self, job: _Job, parts: list[Part]) -> httpx.Response:
        """POST the final upload that joins ``parts``.

        Safe to repeat after a network error: the server answers a repeated POST with
        the final upload it is already joining, or with the file it already made."""
        headers = {
            **TUS,
            "Upload-Concat": streams.final_header(parts),
            "Upload-Metadata": _metadata(job.path),
        }
        return self._request("POST", self.endpoint, headers=headers)

    def _await_final(self, url: str) -> str:
        """Poll the final upload until the server has joined the partials (a HEAD also
        restarts a join that a server restart interrupted)."""
        while True:
            response = self._request("HEAD", url, headers=TUS)
            if response.status_code != 200:
                raise Failed(_reason(response), _message(response))
            file_id: str = response.headers.get("x-gateway-file-id", "")
            if file_id:
                return file_id
            hinted = retry.retry_after(response.headers.get("retry-after"), time.time())
            time.sleep(min(max(hinted or POLL_INTERVAL, 0.2), MAX_POLL_INTERVAL))

    # -- sending one stream ---------------------------------------------------------

    def _send(
        self, path: Path, stream: _Stream, offset: int, whole: _FileHash | None
    ) -> str | None:
        """PATCH the stream's bytes from file position ``offset`` to the end of its span.

        By default the rest of the span goes as one request streamed from disk, so the
        connection never waits between requests; with ``chunk_size`` each request
        carries one chunk and its SHA-256 (``Upload-Checksum``). After a failure the
        server says where the upload stands (HEAD) and sending goes on from there.

        Returns the file id the server names when the upload completes the file (None
        for a partial).
        """
        failures = 0
        last_reason = ""
        span = stream.span
        reader = (
            _Reader(path, span.end, self.chunk_size, ahead=stream.ahead)
            if self.chunk_size
            else None
        )
        with reader if reader is not None else contextlib.nullcontext():
            while True:
                if stream.stop.is_set():
                    raise Failed("stopped")
                end = span.end if reader is None else min(offset + self.chunk_size, span.end)
                try:
                    if reader is None:
                        response = self._patch_stream(path, stream, offset, end, whole)
                    else:
                        response = self._patch_chunk(stream, reader.get(offset), whole)
                except httpx.TransportError:
                    response = None
                if response is None:
                    last_reason = "network"
                elif response.status_code == 204:
                    reached = int(response.headers.get("upload-offset", end - span.start))
                    offset = span.start + reached
                    failures = 0
                    stream.meter.at(stream.index, offset - span.start)
                    if offset >= span.end:
                        file_id: str | None = response.headers.get("x-gateway-file-id")
                        return file_id
                    continue
                elif not retry.retryable(response.status_code):
                    raise Failed(_reason(response), _message(response))
                else:
                    last_reason = _reason(response)
                failures += 1
                if failures > self.retries:
                    raise Failed(last_reason or "network")
                self._wait(failures - 1, response)
                before = offset
                offset, done = self._where(stream)
                stream.meter.at(stream.index, offset - span.start)
                if offset >= span.end:
                    return done
                if offset > before:
                    failures = 0  # the cut request got bytes through: not a failing link

    def _headers(self, stream: _Stream, offset: int, length: int) -> dict[str, str]:
        return {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset - stream.span.start),
            "Content-Length": str(length),
        }

    def _patch_stream(
        self, path: Path, stream: _Stream, offset: int, end: int, whole: _FileHash | None
    ) -> httpx.Response:
        """One PATCH of the file's bytes ``offset`` to ``end``, read from disk as sent; the
        whole-file hash is fed on a worker thread meanwhile."""
        start = stream.span.start

        def body() -> Generator[bytes, None, None]:
            with open(path, "rb") as fh, _Hasher(whole) as hasher:
                fh.seek(offset)
                position = offset
                while position < end:
                    if stream.stop.is_set():
                        raise Failed("stopped")
                    data = fh.read(min(STREAM_SLICE, end - position))
                    if not data:
                        raise Failed("file-changed", "the file shrank while uploading")
                    hasher.feed(position, data)
                    yield data
                    position += len(data)
                    stream.meter.at(stream.index, position - start)

        content = body()
        try:
            return self.client.patch(
                stream.url, content=content, headers=self._headers(stream, offset, end - offset)
            )
        finally:
            content.close()

    def _patch_chunk(
        self, stream: _Stream, chunk: _Chunk, whole: _FileHash | None
    ) -> httpx.Response:
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

        return self.client.patch(stream.url, content=body(), headers=headers)

    def _where(self, stream: _Stream) -> tuple[int, str | None]:
        """Ask the server where the upload stands (after a failure): a file position, and
        the file id if the upload is complete."""
        response = self._request("HEAD", stream.url, headers=TUS)
        if response.status_code in (404, 410):
            raise Failed(f"http-{response.status_code}", "the upload is gone on the server")
        if response.status_code != 200:
            raise Failed(_reason(response), _message(response))
        offset = stream.span.start + int(response.headers.get("upload-offset", "0"))
        done = response.headers.get("x-gateway-file-id") if offset >= stream.span.end else None
        return offset, done

    def _check_receipt(self, file_id: str, size: int, digest: str) -> None:
        response = self._request(
            "GET", f"{self.link}/files", headers={"Accept": "application/json"}
        )
        if response.status_code != 200:
            raise Failed("no-receipt", _message(response))
        for receipt in response.json().get("files", []):
            if receipt.get("file_id") == file_id:
                if receipt.get("size") != size or receipt.get("sha256") != digest:
                    raise Failed("checksum-mismatch", "the server stored different bytes")
                return
        raise Failed("no-receipt", "the server has no receipt for the file")


def _final_of(response: httpx.Response) -> tuple[str, str | None]:
    """A final upload's URL, and the file id if the server joined the partials before
    answering; any refusal fails the file."""
    if response.status_code != 201 or "location" not in response.headers:
        raise Failed(_reason(response), _message(response))
    done = "upload-offset" in response.headers
    file_id: str | None = response.headers.get("x-gateway-file-id") if done else None
    return response.headers["location"], file_id


def _reason(response: httpx.Response) -> str:
    return f"http-{response.status_code}"


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}", justify="left"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_upload(
    url: str,
    files: list[str],
    *,
    parallel: int,
    chunk_size: int,
    retries: int,
    quiet: bool,
    streams: int | None = 1,
) -> int:
    """Upload ``files`` to the link ``url``; print one final line per file; 0 if all OK."""
    err = Console(stderr=True)
    try:
        link = link_of(url)
    except Failed as exc:
        err.print(f"gateway upload: {exc}")
        return 2
    if chunk_size < 0 or parallel < 1 or (streams is not None and streams < 1) or retries < 0:
        err.print("gateway upload: --parallel and --streams must be positive")
        return 2
    states = StateFile(state_dir())
    progress = None if quiet else _progress(err)
    results: dict[str, Result] = {}
    # Every stream of every file at once has its own connection, plus a few spare.
    limits = httpx.Limits(max_connections=parallel * (streams or AUTO_STREAMS) + 4)
    with httpx.Client(timeout=TIMEOUT, limits=limits, follow_redirects=False) as client:
        uploader = _Uploader(
            client, link, states, progress, chunk_size=chunk_size, retries=retries,
            streams=streams,
        )  # fmt: skip

        def one(name: str) -> Result:
            try:
                return uploader.upload(Path(name), name)
            except Failed as exc:
                if str(exc) != exc.reason:
                    err.print(f"{name}: {exc}")
                return Result(name=name, ok=False, reason=exc.reason)
            except OSError as exc:
                err.print(f"{name}: {exc.strerror or exc}")
                return Result(name=name, ok=False, reason="unreadable")

        if progress is not None:
            progress.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(min(parallel, len(files))) as pool:
                for name, result in zip(files, pool.map(one, files), strict=True):
                    results[name] = result
        except KeyboardInterrupt:
            # Worker threads cannot be interrupted; what was sent is kept on the server and
            # the state file is always consistent, so leave at once: a re-run resumes.
            if progress is not None:
                progress.stop()
            err.print("interrupted; run the same command again to resume")
            os._exit(130)
        finally:
            if progress is not None:
                progress.stop()
    for name in files:
        print(results[name].line(), flush=True)
    return 0 if all(r.ok for r in results.values()) else 1
