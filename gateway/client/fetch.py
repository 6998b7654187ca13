"""One file fetched as ranged pieces on several connections, checked in order as they land.

Each piece is written in place into ``NAME.part``; one thread reads the
pieces back in order, feeds the whole file's SHA-256, and for a piece left by
an earlier run first checks its CRC-32 against the state file (see
:mod:`gateway.client.download` for the whole story).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress, TaskID

from gateway.client import ranged, retry
from gateway.client.outcome import Failed, message, reason
from gateway.client.pieces import (
    PieceCheck,
    PieceState,
    load_state,
    part_path,
    piece_size_for,
    save_state,
    spans,
    state_path,
)
from gateway.client.remote import Remote

VERIFY_BLOCK = 4 * 1024 * 1024
BODY_BLOCK = 1024 * 1024  # a piece's body is read into a buffer this big, then written
# Written to the file this much per call: Linux sizes a new page-cache folio by the write,
# and folios of 1 MiB need memory compaction once the page cache is full and fragmented
# (2 to 3 times the kernel CPU per GiB here), where 64 KiB writes stay cheap.
WRITE_BLOCK = 64 * 1024


class Meter:
    """A file's progress bar: bytes on disk and checked or on their way."""

    def __init__(self, progress: Progress | None, name: str, size: int) -> None:
        self.progress = progress
        self.task: TaskID | None = None if progress is None else progress.add_task(name, total=size)

    def add(self, count: int) -> None:
        if self.progress is not None and self.task is not None and count:
            self.progress.update(self.task, advance=count)


class FileFetch:
    """One file being fetched: the pieces, who fetches which, and the in-order check."""

    def __init__(
        self,
        client: httpx.Client,
        remote: Remote,
        target: Path,
        meter: Meter,
        *,
        connections: int,
        retries: int,
        headers: dict[str, str],
    ) -> None:
        self.client = client
        self.remote = remote
        self.target = target
        self.part = part_path(target)
        self.state_file = state_path(target)
        self.meter = meter
        self.connections = connections
        self.retries = retries
        self.headers = headers
        self.direct = ranged.usable()  # pieces over http.client, not httpx (no proxy to use)
        self.cond = threading.Condition()
        self.queue: collections.deque[int] = collections.deque()
        self.trusted: set[int] = set()  # fetched by this run: the bytes on disk are known
        self.error: Failed | None = None
        self.finished = False
        self.state = PieceState(remote.sha256, remote.size, 0)
        self.spans: list[tuple[int, int]] = []

    # -- setting up ----------------------------------------------------------------

    def _open(self) -> int:
        """Open (or create) the partial file, locked, sized; load or reset its state."""
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Failed("busy", f"{self.part} is being written by another run") from None
        state = load_state(self.state_file)
        if (
            state is None
            or not state.matches(self.remote.sha256, self.remote.size)
            or os.fstat(fd).st_size != self.remote.size
        ):
            state = PieceState(
                self.remote.sha256,
                self.remote.size,
                piece_size_for(self.remote.size, self.connections),
            )
            os.ftruncate(fd, 0)
            os.ftruncate(fd, self.remote.size)
            save_state(self.state_file, state)
        self.state = state
        self.spans = spans(self.remote.size, state.piece_size)
        missing = [index for index in range(len(self.spans)) if index not in state.done]
        self.queue.extend(missing)
        resumed = sum(self._length(index) for index in state.done)
        self.meter.add(resumed)
        return fd

    def _length(self, index: int) -> int:
        start, end = self.spans[index]
        return end - start

    # -- the run -------------------------------------------------------------------

    def run(self) -> str:
        """Fetch and verify; the verified SHA-256 (the file is at its final name)."""
        fd = self._open()
        try:
            workers = max(1, min(self.connections, len(self.queue) or 1))
            with concurrent.futures.ThreadPoolExecutor(workers, "piece") as pool:
                futures = [pool.submit(self._worker) for _ in range(workers)]
                try:
                    digest = self._verify(fd)
                finally:
                    with self.cond:
                        self.finished = True
                        self.cond.notify_all()
                    concurrent.futures.wait(futures)
            os.replace(self.part, self.target)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            return digest
        finally:
            os.close(fd)

    def _fail(self, error: Failed) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def _worker(self) -> None:
        fd = os.open(self.part, os.O_RDWR)
        link = _Link(ranged.Connections() if self.direct else None)
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.finished and self.error is None:
                        self.cond.wait()
                    if self.finished or self.error is not None:
                        return
                    index = self.queue.popleft()
                try:
                    digest = self._fetch(fd, index, link)
                except Failed as exc:
                    self._fail(exc)
                    return
                except OSError as exc:
                    self._fail(Failed("unwritable", str(exc)))
                    return
                with self.cond:
                    self.state.done[index] = digest
                    self.trusted.add(index)
                    save_state(self.state_file, self.state)
                    self.cond.notify_all()
        finally:
            link.close()
            os.close(fd)

    def _fetch(self, fd: int, index: int, link: _Link) -> str:
        """One piece into its place in the partial file, with retries; its CRC-32."""
        start, end = self.spans[index]
        failures = 0
        while True:
            try:
                return self._get(fd, start, end, link)
            except _Retry as exc:
                self.meter.add(-exc.written)
                failures += 1
                if failures > self.retries:
                    raise Failed(exc.reason, str(exc)) from None
                delay = retry.backoff(failures - 1) if exc.delay is None else exc.delay
                time.sleep(min(max(delay, 0.1), retry.MAX_DELAY))
            with self.cond:
                if self.error is not None or self.finished:
                    raise Failed("stopped")

    def _get(self, fd: int, start: int, end: int, link: _Link) -> str:
        """GET ``start``-``end`` into the file; transient failures raise :class:`_Retry`
        with how many bytes they wrote (the progress bar takes them back)."""
        digest = PieceCheck()
        if end == start:
            return digest.hexdigest()
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        if link.connections is not None:
            return self._get_direct(fd, start, end, headers, digest, link.connections, link.view)
        return self._get_httpx(fd, start, end, headers, digest)

    def _accepts(self, status: int, start: int, end: int) -> bool:
        """Whether ``status`` answers the range (200: the whole file, asked for whole)."""
        return status == 206 or (status == 200 and start == 0 and end == self.remote.size)

    def _check_range(self, status: int, content_range: str | None, start: int, end: int) -> None:
        expected = f"bytes {start}-{end - 1}/{self.remote.size}"
        if status == 206 and (content_range or "").strip() != expected:
            raise Failed("bad-range", "the server answered another range")

    def _get_direct(
        self,
        fd: int,
        start: int,
        end: int,
        headers: dict[str, str],
        digest: PieceCheck,
        connections: ranged.Connections,
        view: memoryview,
    ) -> str:
        """The piece over :mod:`gateway.client.ranged`, its body read into ``view``."""
        written, url, done = 0, self.remote.url, False
        try:
            response, url = connections.get(url, headers)
            if not self._accepts(response.status, start, end):
                body = ranged.read_some(response)
                if retry.retryable(response.status):
                    hinted = retry.retry_after(response.getheader("retry-after"), time.time())
                    raise _Retry(f"http-{response.status}", f"HTTP {response.status}", hinted, 0)
                raise Failed(f"http-{response.status}", ranged.error_message(body, response.reason))
            self._check_range(response.status, response.getheader("content-range"), start, end)
            position = start
            while position < end:
                count = ranged.read_into(response, view[: min(len(view), end - position)])
                if not count:
                    raise _Retry("short", "the body ended early", None, written)
                _write(fd, view[:count], position)
                digest.update(view[:count])
                position += count
                written += count
                self.meter.add(count)
            if not response.isclosed() and ranged.read_some(response, 1):
                raise Failed("bad-range", "the server sent more than the range")
            done = True
        except ranged.NetworkError as exc:
            raise _Retry("network", str(exc), None, written) from exc
        finally:
            if not done:
                connections.drop(url)  # a body not read to its end: the connection goes
        return digest.hexdigest()

    def _get_httpx(
        self, fd: int, start: int, end: int, headers: dict[str, str], digest: PieceCheck
    ) -> str:
        """The piece through httpx (the environment names a proxy, which httpx uses)."""
        written = 0
        try:
            with self.client.stream(
                "GET", self.remote.url, headers=headers, follow_redirects=True
            ) as response:
                if not self._accepts(response.status_code, start, end):
                    if retry.retryable(response.status_code):
                        hinted = retry.retry_after(response.headers.get("retry-after"), time.time())
                        raise _Retry(reason(response), f"HTTP {response.status_code}", hinted, 0)
                    response.read()
                    raise Failed(reason(response), message(response))
                self._check_range(
                    response.status_code, response.headers.get("content-range"), start, end
                )
                position = start
                for chunk in response.iter_raw():
                    if position + len(chunk) > end:
                        raise Failed("bad-range", "the server sent more than the range")
                    _write(fd, memoryview(chunk), position)
                    position += len(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    self.meter.add(len(chunk))
                if position != end:
                    raise _Retry("short", "the body ended early", None, written)
        except httpx.TransportError as exc:
            raise _Retry("network", str(exc), None, written) from exc
        return digest.hexdigest()

    # -- the in-order check ------------------------------------------------------------

    def _wait_for(self, index: int) -> bool:
        """Wait until piece ``index`` is on disk; whether it was fetched by this run."""
        with self.cond:
            while index not in self.state.done and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            return index in self.trusted

    def _refetch(self, indices: list[int]) -> None:
        with self.cond:
            for index in indices:
                self.state.done.pop(index, None)
                self.trusted.discard(index)
                self.queue.append(index)
            save_state(self.state_file, self.state)
            self.cond.notify_all()
        self.meter.add(-sum(self._length(index) for index in indices))

    def _verify(self, fd: int) -> str:
        """Hash the file in piece order as pieces arrive; checked twice at most."""
        buffer = bytearray(VERIFY_BLOCK)
        for attempt in range(2):
            whole = hashlib.sha256()
            index = 0
            while index < len(self.spans):
                trusted = self._wait_for(index)
                start, end = self.spans[index]
                if trusted:
                    _feed(fd, start, end, buffer, whole)
                    index += 1
                    continue
                trial = whole.copy()
                piece = PieceCheck()
                _feed(fd, start, end, buffer, trial, piece)
                if piece.hexdigest() == self.state.done.get(index):
                    whole = trial
                    index += 1
                else:
                    self._refetch([index])  # damaged on disk: fetch again, then re-check
            digest = whole.hexdigest()
            if digest == self.remote.sha256:
                return digest
            if attempt == 0:
                # Every piece matched what arrived, yet the whole does not: check each
                # piece's bytes on disk against what arrived, fetch the ones that differ.
                with self.cond:
                    self.trusted.clear()
        for path in (self.part, self.state_file):  # start over on a re-run
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise Failed("checksum-mismatch", "the bytes do not match the link's SHA-256")


class _Retry(Exception):
    def __init__(self, reason: str, message: str, delay: float | None, written: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.delay = delay
        self.written = written


def _feed(fd: int, start: int, end: int, buffer: bytearray, *hashes: Any) -> None:
    """Feed bytes ``start``-``end`` of the file to ``hashes``, read into one reused buffer."""
    view = memoryview(buffer)
    position = start
    while position < end:
        count = os.preadv(fd, [view[: min(len(view), end - position)]], position)
        if not count:
            raise Failed("unreadable", "the partial file is shorter than expected")
        for digest in hashes:
            digest.update(view[:count])
        position += count


def _write(fd: int, data: memoryview, position: int) -> None:
    """Write ``data`` at ``position``, at most :data:`WRITE_BLOCK` bytes per call."""
    while data:
        count = os.pwrite(fd, data[:WRITE_BLOCK], position)
        data = data[count:]
        position += count


class _Link:
    """One worker's way to the server: its connections (None: through httpx) and buffer."""

    def __init__(self, connections: ranged.Connections | None) -> None:
        self.connections = connections
        self.view = memoryview(bytearray(BODY_BLOCK))

    def close(self) -> None:
        if self.connections is not None:
            self.connections.close()
