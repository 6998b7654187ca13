"""``gateway download URL...``: fast, resumable, verified downloads of signed links.

For each link the client asks ``HEAD`` for the size, the ETag (the file's
SHA-256, see :mod:`gateway.http.downloads`) and the file name, then fetches
the file as pieces (:mod:`gateway.client.pieces`) with ranged ``GET``s on
``connections`` connections at once, each piece written in place into
``NAME.part`` beside the target. A link that answers with a redirect (a
presigned storage URL) is followed; the range goes along.

One thread checks the file in order while the pieces arrive: it reads each
piece back from disk (from the page cache, just written), feeds the whole
file's SHA-256, and for a piece left by an earlier run, first compares the
piece's CRC-32 with the one remembered in ``NAME.part.json``: a piece that
differs (a damaged partial file) is fetched again. Only when the whole
file's SHA-256 equals the ETag does ``NAME.part`` get its final name; if it
does not, every piece is checked against what was received and the
differing ones fetched again, once, before the file is given up.

Re-running the same command (or ``--ticket`` with fresh links) resumes:
the state names the file by SHA-256 and size, not by link. Output is a
progress bar per file on stderr and one line per file on stdout::

    OK <sha256> <size> <path>
    FAILED <reason> <url>

Exit status 0 only if every file is OK.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from rich.console import Console
from rich.progress import Progress, TaskID

from gateway.client import retry
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
from gateway.client.upload import _progress
from gateway.filenames import clean_filename, unique_names

VERIFY_BLOCK = 4 * 1024 * 1024
TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=60.0, pool=120.0)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# RFC 6266 / 5987: filename*=UTF-8''percent-encoded (preferred over the plain filename=)
_EXTENDED_NAME = re.compile(r"filename\*\s*=\s*(UTF-8|ISO-8859-1)'[^']*'([^;\s]+)", re.I)


class Failed(Exception):
    """One file failed for good; ``reason`` is one word for the final line."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    url: str
    ok: bool
    sha256: str = ""
    size: int = 0
    path: str = ""
    reason: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK {self.sha256} {self.size} {self.path}"
        return f"FAILED {self.reason} {self.url}"


@dataclass(frozen=True)
class Remote:
    """What ``HEAD`` says about a link: size, SHA-256 (from the ETag), file name."""

    url: str
    size: int
    sha256: str
    filename: str


@dataclass(frozen=True)
class Job:
    """One file to fetch: the link, and the name to give it (None: from the link)."""

    url: str
    name: str | None = None


def name_from(disposition: str | None, url: str) -> str:
    """The file name a ``Content-Disposition`` gives (``filename*`` first), else the
    link's last path segment, made safe to use as a name in one directory."""
    name = ""
    if disposition:
        extended = _EXTENDED_NAME.search(disposition)
        if extended:
            name = unquote(extended.group(2), encoding=extended.group(1), errors="replace")
        else:
            message = Message()
            message["content-disposition"] = disposition
            name = message.get_filename() or ""
    if not name:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return clean_filename(name, fallback="download.bin")


def sha256_of_etag(etag: str | None) -> str | None:
    """The SHA-256 in a strong ETag ``"<64 hex>"``; None for anything else."""
    if not etag or etag.startswith("W/"):
        return None
    value = etag.strip().strip('"').lower()
    return value if _SHA256.match(value) else None


def _reason(response: httpx.Response) -> str:
    return f"http-{response.status_code}"


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase


class _Meter:
    """A file's progress bar: bytes on disk and checked or on their way."""

    def __init__(self, progress: Progress | None, name: str, size: int) -> None:
        self.progress = progress
        self.task: TaskID | None = None if progress is None else progress.add_task(name, total=size)

    def add(self, count: int) -> None:
        if self.progress is not None and self.task is not None and count:
            self.progress.update(self.task, advance=count)


class _File:
    """One file being fetched: the pieces, who fetches which, and the in-order check."""

    def __init__(
        self,
        client: httpx.Client,
        remote: Remote,
        target: Path,
        meter: _Meter,
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
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.finished and self.error is None:
                        self.cond.wait()
                    if self.finished or self.error is not None:
                        return
                    index = self.queue.popleft()
                try:
                    digest = self._fetch(fd, index)
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
            os.close(fd)

    def _fetch(self, fd: int, index: int) -> str:
        """One piece into its place in the partial file, with retries; its CRC-32."""
        start, end = self.spans[index]
        failures = 0
        while True:
            try:
                return self._get(fd, start, end)
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

    def _get(self, fd: int, start: int, end: int) -> str:
        """GET ``start``-``end`` into the file; transient failures raise :class:`_Retry`
        with how many bytes they wrote (the progress bar takes them back)."""
        digest = PieceCheck()
        if end == start:
            return digest.hexdigest()
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        written = 0
        try:
            with self.client.stream(
                "GET", self.remote.url, headers=headers, follow_redirects=True
            ) as response:
                if response.status_code != 206 and not (
                    response.status_code == 200 and start == 0 and end == self.remote.size
                ):
                    if retry.retryable(response.status_code):
                        hinted = retry.retry_after(response.headers.get("retry-after"), time.time())
                        raise _Retry(_reason(response), f"HTTP {response.status_code}", hinted, 0)
                    response.read()
                    raise Failed(_reason(response), _message(response))
                if response.status_code == 206:
                    expected = f"bytes {start}-{end - 1}/{self.remote.size}"
                    if response.headers.get("content-range", "").strip() != expected:
                        raise Failed("bad-range", "the server answered another range")
                position = start
                for chunk in response.iter_raw():
                    if position + len(chunk) > end:
                        raise Failed("bad-range", "the server sent more than the range")
                    view = memoryview(chunk)
                    while view:
                        count = os.pwrite(fd, view, position)
                        view = view[count:]
                        position += count
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
        for attempt in range(2):
            whole = hashlib.sha256()
            index = 0
            while index < len(self.spans):
                trusted = self._wait_for(index)
                start, end = self.spans[index]
                if trusted:
                    _feed(fd, start, end, whole)
                    index += 1
                    continue
                trial = whole.copy()
                piece = PieceCheck()
                _feed(fd, start, end, trial, piece)
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


def _feed(fd: int, start: int, end: int, *hashes: Any) -> None:
    position = start
    while position < end:
        block = os.pread(fd, min(VERIFY_BLOCK, end - position), position)
        if not block:
            raise Failed("unreadable", "the partial file is shorter than expected")
        for digest in hashes:
            digest.update(block)
        position += len(block)


class Downloader:
    def __init__(
        self,
        client: httpx.Client,
        directory: Path,
        progress: Progress | None,
        *,
        connections: int,
        retries: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.directory = directory
        self.progress = progress
        self.connections = connections
        self.retries = retries
        self.headers = headers or {}

    def _head(self, url: str) -> Remote:
        response: httpx.Response | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self.client.head(url, headers=self.headers)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise Failed("network", str(exc)) from exc
                time.sleep(retry.backoff(attempt))
                continue
            if not retry.retryable(response.status_code) or attempt == self.retries:
                break
            time.sleep(retry.backoff(attempt))
        assert response is not None
        if response.status_code != 200:
            raise Failed(_reason(response), _message(response))
        sha256 = sha256_of_etag(response.headers.get("etag"))
        if sha256 is None:
            raise Failed("no-checksum", "the link names no SHA-256 (ETag) to verify against")
        length = response.headers.get("content-length", "")
        if not length.isdigit():
            raise Failed("no-length", "the link does not say how long the file is")
        name = name_from(response.headers.get("content-disposition"), url)
        return Remote(url=url, size=int(length), sha256=sha256, filename=name)

    def fetch(self, job: Job) -> Result:
        remote = self._head(job.url)
        name = clean_filename(job.name, fallback="download.bin") if job.name else remote.filename
        target = self.directory / name
        shown = str(target)
        if target.exists():
            if _complete(target, remote):
                return Result(job.url, True, remote.sha256, remote.size, shown)
            raise Failed("exists", f"{target} exists and is another file")
        meter = _Meter(self.progress, name, remote.size)
        file = _File(
            self.client, remote, target, meter,
            connections=self.connections, retries=self.retries, headers=self.headers,
        )  # fmt: skip
        digest = file.run()
        return Result(job.url, True, digest, remote.size, shown)


def _complete(target: Path, remote: Remote) -> bool:
    """Whether ``target`` already is the file (a re-run after it finished)."""
    if target.stat().st_size != remote.size:
        return False
    digest = hashlib.sha256()
    with open(target, "rb") as fh:
        while block := fh.read(VERIFY_BLOCK):
            digest.update(block)
    return digest.hexdigest() == remote.sha256


def ticket_jobs(
    client: httpx.Client, gateway: str, ticket: str, token: str
) -> tuple[list[Job], list[Result], list[str]]:
    """Every stored file of a ticket, from the staff API: jobs for the files with a link;
    failed results for files not downloadable yet (still scanning); and the names of
    quarantined files, which are never downloaded."""
    url = f"{gateway.rstrip('/')}/api/tickets/{ticket}/files"
    try:
        response = client.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise Failed("network", str(exc)) from exc
    if response.status_code != 200:
        raise Failed(_reason(response), _message(response))
    files = response.json().get("files", [])
    names = unique_names([str(f.get("filename") or "download.bin") for f in files])
    jobs: list[Job] = []
    waiting: list[Result] = []
    quarantined: list[str] = []
    for file, name in zip(files, names, strict=True):
        link = file.get("download_url")
        if link:
            jobs.append(Job(link, name))
        elif file.get("status") == "quarantined":
            quarantined.append(name)
        else:
            waiting.append(Result(name, False, reason=str(file.get("status") or "unavailable")))
    return jobs, waiting, quarantined


def run_download(
    urls: list[str],
    *,
    directory: str,
    connections: int,
    retries: int,
    quiet: bool,
    ticket: str | None = None,
    gateway: str | None = None,
    token: str | None = None,
) -> int:
    """Download every link (or every file of ``ticket``); one line per file; 0 if all OK."""
    err = Console(stderr=True)
    if connections < 1 or retries < 0:
        err.print("gateway download: --connections must be positive")
        return 2
    target_dir = Path(directory)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err.print(f"gateway download: {directory}: {exc.strerror or exc}")
        return 2
    progress = None if quiet else _progress(err)
    results: list[Result] = []
    limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections)
    with httpx.Client(timeout=TIMEOUT, limits=limits, follow_redirects=False) as client:
        jobs = [Job(url) for url in urls]
        headers: dict[str, str] = {}
        if ticket is not None:
            if not gateway or not token:
                err.print("gateway download: --ticket needs --gateway and GATEWAY_STAFF_TOKEN")
                return 2
            try:
                jobs, waiting, quarantined = ticket_jobs(client, gateway, ticket, token)
            except Failed as exc:
                err.print(f"gateway download: ticket {ticket}: {exc}")
                print(f"FAILED {exc.reason} {gateway.rstrip('/')}/api/tickets/{ticket}/files")
                return 1
            results.extend(waiting)
            for name in quarantined:
                err.print(f"{name}: quarantined by the malware scanner; not downloaded")
            if not jobs and not waiting:
                err.print(f"ticket {ticket} has no files to download")
            # The staff token goes only to the gateway named by --gateway (where downloads
            # need a signed-in engineer it stands for one); httpx drops it on a redirect
            # to another origin (a presigned storage URL).
            headers = {"Authorization": f"Bearer {token}"}
        downloader = Downloader(
            client, target_dir, progress, connections=connections, retries=retries
        )
        if progress is not None:
            progress.start()
        try:
            for job in jobs:
                downloader.headers = headers if _same_origin(job.url, gateway) else {}
                try:
                    results.append(downloader.fetch(job))
                except Failed as exc:
                    if str(exc) != exc.reason:
                        err.print(f"{job.url}: {exc}")
                    results.append(Result(job.url, False, reason=exc.reason))
                except OSError as exc:
                    err.print(f"{job.url}: {exc.strerror or exc}")
                    results.append(Result(job.url, False, reason="unwritable"))
        except KeyboardInterrupt:
            if progress is not None:
                progress.stop()
            err.print("interrupted; run the same command again to resume")
            os._exit(130)
        finally:
            if progress is not None:
                progress.stop()
    for result in results:
        print(result.line(), flush=True)
    if ticket is None and not results:
        return 1
    return 0 if all(r.ok for r in results) else 1


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _same_origin(url: str, gateway: str | None) -> bool:
    return gateway is not None and _origin(url) == _origin(gateway)
