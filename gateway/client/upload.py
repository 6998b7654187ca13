"""``gateway upload URL FILE...``: a resumable tus client for scripts and terminals.

Each file goes up as one tus upload in PATCH requests of ``chunk_size``
bytes, each with ``Upload-Checksum: sha256``. While one chunk is being sent
the next is already read from disk and hashed (one chunk of prefetch), so
the disk and the network work at the same time. ``parallel`` files go up at
once. Failures (network errors, 5xx, 409, 423, 429, 460) are retried with
exponential backoff and jitter, honouring ``Retry-After``; after each
failure the client asks the server (HEAD) where the upload stands.

Re-running the same command resumes: the tus URL of every unfinished upload
is kept in a state file under the file's fingerprint (see
:mod:`gateway.client.state`). The whole file's SHA-256 is computed locally
and compared with the server's receipt at the end.

Output: a progress bar per file on stderr, and on stdout one final line per
file that scripts can parse::

    OK <sha256> <size> <filename>
    FAILED <reason> <filename>

Exit status 0 only if every file is OK.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import mimetypes
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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

from gateway.client import retry
from gateway.client.state import StateFile, fingerprint, state_dir

TUS = {"Tus-Resumable": "1.0.0"}
SLICE = 256 * 1024
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

    def cover(self, chunk: _Chunk) -> None:
        with self.lock:
            if chunk.offset > self.done:
                with open(self.path, "rb") as fh:
                    fh.seek(self.done)
                    while self.done < chunk.offset:
                        block = fh.read(min(8 << 20, chunk.offset - self.done))
                        if not block:
                            raise Failed("file-changed", "the file shrank while uploading")
                        self.state.update(block)
                        self.done += len(block)
            end = chunk.offset + len(chunk.data)
            if chunk.offset <= self.done < end:
                self.state.update(memoryview(chunk.data)[self.done - chunk.offset :])
                self.done = end

    def finish(self, size: int) -> str:
        self.cover(_Chunk(size, b""))
        return self.state.hexdigest()


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
    ) -> None:
        self.client = client
        self.link = link
        self.endpoint = f"{link}/tus/"
        self.states = states
        self.progress = progress
        self.chunk_size = chunk_size
        self.retries = retries

    # -- requests with retries ------------------------------------------------------

    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        delay = retry.backoff(attempt)
        if response is not None:
            hinted = retry.retry_after(response.headers.get("retry-after"), time.time())
            if hinted is not None:
                delay = min(max(hinted, 0.1), retry.MAX_DELAY * 5)
        time.sleep(delay)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One idempotent request (HEAD, POST creation, GET), retried on transient failure."""
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

    # -- one file -------------------------------------------------------------------

    def upload(self, path: Path, name: str) -> Result:
        size = path.stat().st_size
        key = fingerprint(path, self.link)
        task = self._task(name, size)
        url, offset, file_id = self._resume(key, size)
        if url is None:
            url, offset, file_id = self._create(path, size)
            self.states.put(
                key, {"url": url, "file": str(path.resolve()), "size": size, "at": time.time()}
            )
        self._advance(task, offset)
        whole = _FileHash(path)
        if file_id is None:
            file_id = self._send(path, url, size, offset, whole, task)
        digest = whole.finish(size)
        try:
            self._check_receipt(file_id, size, digest)
        finally:
            self.states.drop(key)
        return Result(name=name, ok=True, sha256=digest, size=size)

    def _task(self, name: str, size: int) -> TaskID | None:
        if self.progress is None:
            return None
        return self.progress.add_task(name, total=size)

    def _advance(self, task: TaskID | None, completed: int) -> None:
        if self.progress is not None and task is not None:
            self.progress.update(task, completed=completed)

    def _resume(self, key: str, size: int) -> tuple[str | None, int, str | None]:
        entry = self.states.get(key)
        if entry is None or not isinstance(entry.get("url"), str):
            return None, 0, None
        url: str = entry["url"]
        if not url.startswith(self.endpoint):
            return None, 0, None
        response = self._request("HEAD", url, headers=TUS)
        if response.status_code != 200:
            self.states.drop(key)  # 404/410: gone or expired, start over
            return None, 0, None
        length = response.headers.get("upload-length")
        offset_text = response.headers.get("upload-offset", "")
        if length != str(size) or not offset_text.isdigit():
            self.states.drop(key)
            return None, 0, None
        return url, int(offset_text), response.headers.get("x-gateway-file-id")

    def _create(self, path: Path, size: int) -> tuple[str, int, str | None]:
        metadata = f"filename {_b64(path.name)}"
        kind, _ = mimetypes.guess_type(path.name)
        if kind:
            metadata += f",filetype {_b64(kind)}"
        headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": metadata}
        response = self._request("POST", self.endpoint, headers=headers)
        if response.status_code != 201 or "location" not in response.headers:
            raise Failed(f"http-{response.status_code}", _message(response))
        return response.headers["location"], 0, response.headers.get("x-gateway-file-id")

    def _read(self, path: Path, offset: int, size: int) -> _Chunk:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(min(self.chunk_size, size - offset))
        if offset + len(data) < size and len(data) < self.chunk_size:
            raise Failed("file-changed", "the file shrank while uploading")
        return _Chunk(offset, data)

    def _send(
        self, path: Path, url: str, size: int, offset: int, whole: _FileHash, task: TaskID | None
    ) -> str:
        failures = 0
        last_reason = ""
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch") as disk:
            ahead = disk.submit(self._read, path, offset, size)
            while True:
                chunk = ahead.result()
                if chunk.offset != offset:
                    ahead = disk.submit(self._read, path, offset, size)
                    continue
                end = offset + len(chunk.data)
                if end < size:  # read the next chunk while this one is on the wire
                    ahead = disk.submit(self._read, path, end, size)
                whole.cover(chunk)
                response: httpx.Response | None = None
                try:
                    response = self._patch(url, chunk, task)
                except httpx.TransportError:
                    last_reason = "network"
                if response is not None and response.status_code == 204:
                    offset = int(response.headers.get("upload-offset", end))
                    failures = 0
                    self._advance(task, offset)
                    if offset >= size:
                        file_id: str = response.headers.get("x-gateway-file-id", "")
                        if not file_id:
                            raise Failed("no-receipt", "the server did not name the file")
                        return file_id
                    continue
                if response is not None:
                    if not retry.retryable(response.status_code):
                        raise Failed(_reason(response), _message(response))
                    last_reason = _reason(response)
                failures += 1
                if failures > self.retries:
                    raise Failed(last_reason or "network")
                self._wait(failures - 1, response)
                offset, done = self._where(url, size)
                self._advance(task, offset)
                if done is not None:
                    return done

    def _patch(self, url: str, chunk: _Chunk, task: TaskID | None) -> httpx.Response:
        headers = {
            **TUS,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(chunk.offset),
            "Upload-Checksum": f"sha256 {chunk.checksum}",
            "Content-Length": str(len(chunk.data)),
        }

        def body() -> Iterator[bytes]:
            view = memoryview(chunk.data)
            for start in range(0, len(view), SLICE):
                piece = view[start : start + SLICE]
                yield bytes(piece)
                if self.progress is not None and task is not None:
                    self.progress.update(task, completed=chunk.offset + start + len(piece))

        return self.client.patch(url, content=body(), headers=headers)

    def _where(self, url: str, size: int) -> tuple[int, str | None]:
        """Ask the server where the upload stands (after a failure)."""
        response = self._request("HEAD", url, headers=TUS)
        if response.status_code in (404, 410):
            raise Failed(f"http-{response.status_code}", "the upload is gone on the server")
        if response.status_code != 200:
            raise Failed(_reason(response), _message(response))
        offset = int(response.headers.get("upload-offset", "0"))
        done = response.headers.get("x-gateway-file-id") if offset >= size else None
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
) -> int:
    """Upload ``files`` to the link ``url``; print one final line per file; 0 if all OK."""
    err = Console(stderr=True)
    try:
        link = link_of(url)
    except Failed as exc:
        err.print(f"gateway upload: {exc}")
        return 2
    if chunk_size < 1 or parallel < 1 or retries < 0:
        err.print("gateway upload: --chunk-size and --parallel must be positive")
        return 2
    states = StateFile(state_dir())
    progress = None if quiet else _progress(err)
    results: dict[str, Result] = {}
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        uploader = _Uploader(client, link, states, progress, chunk_size=chunk_size, retries=retries)

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
