"""``gateway upload URL FILE...``: a resumable tus client for scripts and terminals.

A file goes up as one upload or, to a gateway far enough away that one
connection cannot fill the path (``--streams auto``, see
:mod:`gateway.client.streams`), as up to ``streams`` contiguous ranges sent at
the same time as tus partial uploads, which a final upload (tus
concatenation) then joins. Each stream sends its range as one PATCH that the
kernel copies from disk as it goes, like ``curl -T`` (or, with ``chunk_size``,
in requests of that size each with ``Upload-Checksum: sha256``). ``parallel``
files go up at once. Failures (network errors, 5xx, 409, 423, 429, 460) are retried with
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

import concurrent.futures
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from gateway.client import streams
from gateway.client.concat import Joiner
from gateway.client.outcome import Failed, Result
from gateway.client.progress import Meter, progress_bar, shown
from gateway.client.reader import FileHash
from gateway.client.send import Job, Sender, Stream
from gateway.client.state import StateFile, fingerprint, state_dir
from gateway.client.streams import ALIGN, AUTO_STREAMS, Span
from gateway.client.tus import TIMEOUT, Tus, link_of

__all__ = ["Failed", "Result", "link_of", "run_upload"]


class Uploader:
    """Uploads files to one link: resumes what the state file remembers, else starts."""

    def __init__(
        self,
        tus: Tus,
        states: StateFile,
        progress: Progress | None,
        *,
        chunk_size: int,
        streams: int | None = 1,
    ) -> None:
        self.tus = tus
        self.states = states
        self.progress = progress
        self.chunk_size = chunk_size
        self.streams = streams
        self.sender = Sender(tus, chunk_size)
        self.joiner = Joiner(self.sender, states)

    def upload(self, path: Path, name: str) -> Result:
        """Send one file and check the server's receipt against its size and SHA-256."""
        size = path.stat().st_size
        key = fingerprint(path, self.tus.link)
        job = Job(path, key, size, Meter(self.progress, name, size))
        file_id, digest = self._transfer(job)
        try:
            self.tus.check_receipt(file_id, size, digest)
        finally:
            self.states.drop(job.key)
        return Result(name=name, ok=True, sha256=digest, size=size)

    def _transfer(self, job: Job) -> tuple[str, str]:
        """Resume what the state file remembers, else start: the file id and SHA-256."""
        entry = self.states.get(job.key) or {}
        parts = streams.read_parts(entry, job.size, self.tus.endpoint)
        if parts is not None:
            resumed = self.joiner.resume(job, parts, entry)
            if resumed is not None:
                return resumed
        elif (single := self._resume_single(job, entry)) is not None:
            return self._single(job, *single)
        spans = streams.choose(
            job.size, streams=self.streams, chunk_size=self.chunk_size or ALIGN,
            offer=self.tus.offer,
        )  # fmt: skip
        if len(spans) > 1:
            return self.joiner.start(job, spans)
        url, file_id = self.tus.create(job.size, job.path)
        self.states.remember(job.key, job.path, job.size, {"url": url})
        return self._single(job, url, 0, file_id)

    def _resume_single(self, job: Job, entry: dict[str, Any]) -> tuple[str, int, str | None] | None:
        """The remembered upload of the whole file, where it stands and its file id if
        complete; None (and forgotten) when the server no longer has it."""
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(self.tus.endpoint):
            return None
        response = self.tus.head(url)
        length = response.headers.get("upload-length")
        offset_text = response.headers.get("upload-offset", "")
        if response.status_code != 200 or length != str(job.size) or not offset_text.isdigit():
            self.states.drop(job.key)  # 404/410: gone or expired, start over
            return None
        return url, int(offset_text), response.headers.get("x-gateway-file-id")

    def _single(self, job: Job, url: str, offset: int, file_id: str | None) -> tuple[str, str]:
        """Send the whole file as one upload from ``offset``, hashing it in order."""
        job.meter.at(0, offset)
        whole = FileHash(job.path)
        if file_id is None:
            stream = Stream(0, url, Span(0, job.size), job.meter, ahead=True)
            file_id = self.sender.send(job.path, stream, offset, whole)
            if not file_id:
                raise Failed("no-receipt", "the server did not name the file")
        return file_id, whole.finish(job.size)


def _valid(parallel: int, chunk_size: int, retries: int, streams: int | None) -> bool:
    return not (
        chunk_size < 0 or parallel < 1 or (streams is not None and streams < 1) or retries < 0
    )


def _one(uploader: Uploader, err: Console, name: str) -> Result:
    """One file's result; a failure is a ``FAILED`` result, its details on stderr."""
    try:
        return uploader.upload(Path(name), name)
    except Failed as exc:
        if str(exc) != exc.reason:
            err.print(f"{name}: {exc}")
        return Result(name=name, ok=False, reason=exc.reason)
    except OSError as exc:
        err.print(f"{name}: {exc.strerror or exc}")
        return Result(name=name, ok=False, reason="unreadable")


def _upload_all(
    uploader: Uploader, files: list[str], parallel: int, err: Console
) -> dict[str, Result]:
    """Every file, ``parallel`` at once. Ctrl-C leaves at once (exit 130): worker threads
    cannot be interrupted, what was sent is kept on the server and the state file is
    always consistent, so a re-run resumes."""
    with shown(uploader.progress, err):
        with concurrent.futures.ThreadPoolExecutor(min(parallel, len(files))) as pool:
            results = pool.map(lambda name: _one(uploader, err, name), files)
            return dict(zip(files, results, strict=True))


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
    if not _valid(parallel, chunk_size, retries, streams):
        err.print("gateway upload: --parallel and --streams must be positive")
        return 2
    progress = None if quiet else progress_bar(err)
    # Every stream of every file at once has its own connection, plus a few spare.
    limits = httpx.Limits(max_connections=parallel * (streams or AUTO_STREAMS) + 4)
    with httpx.Client(timeout=TIMEOUT, limits=limits, follow_redirects=False) as client:
        tus = Tus(client, link, retries)
        uploader = Uploader(
            tus, StateFile(state_dir()), progress, chunk_size=chunk_size, streams=streams
        )
        results = _upload_all(uploader, files, parallel, err)
    for name in files:
        print(results[name].line(), flush=True)
    return 0 if all(r.ok for r in results.values()) else 1
