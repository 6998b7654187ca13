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

import hashlib
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import Progress

from gateway.client import retry
from gateway.client.fetch import VERIFY_BLOCK, FileFetch, Meter
from gateway.client.outcome import Failed, message, reason
from gateway.client.progress import progress_bar, shown
from gateway.client.remote import (
    TIMEOUT,
    Job,
    Remote,
    Result,
    name_from,
    sha256_of_etag,
)
from gateway.filenames import clean_filename, unique_names

__all__ = [
    "Downloader",
    "Job",
    "Result",
    "name_from",
    "run_download",
    "sha256_of_etag",
    "ticket_jobs",
]


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
            raise Failed(reason(response), message(response))
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
        meter = Meter(self.progress, name, remote.size)
        file = FileFetch(
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
        raise Failed(reason(response), message(response))
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
    progress = None if quiet else progress_bar(err)
    results: list[Result] = []
    limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections)
    with httpx.Client(timeout=TIMEOUT, limits=limits, follow_redirects=False) as client:
        jobs = [Job(url) for url in urls]
        if ticket is not None:
            listed = _ticket(client, err, ticket, gateway, token)
            if isinstance(listed, int):
                return listed
            jobs, waiting = listed
            results.extend(waiting)
        # The staff token goes only to the gateway named by --gateway (where downloads
        # need a signed-in engineer it stands for one); it is dropped on a redirect to
        # another origin (a presigned storage URL).
        headers = {"Authorization": f"Bearer {token}"} if gateway and token else {}
        downloader = Downloader(
            client, target_dir, progress, connections=connections, retries=retries
        )
        results.extend(_fetch_all(downloader, jobs, headers, gateway, progress, err))
    for result in results:
        print(result.line(), flush=True)
    if ticket is None and not results:
        return 1
    return 0 if all(r.ok for r in results) else 1


def _ticket(
    client: httpx.Client, err: Console, ticket: str, gateway: str | None, token: str | None
) -> tuple[list[Job], list[Result]] | int:
    """The jobs and not-yet-downloadable files of ``ticket``, or the exit status if the
    ticket cannot be listed (its FAILED line printed)."""
    if not gateway or not token:
        err.print("gateway download: --ticket needs --gateway and GATEWAY_STAFF_TOKEN")
        return 2
    try:
        jobs, waiting, quarantined = ticket_jobs(client, gateway, ticket, token)
    except Failed as exc:
        err.print(f"gateway download: ticket {ticket}: {exc}")
        print(f"FAILED {exc.reason} {gateway.rstrip('/')}/api/tickets/{ticket}/files")
        return 1
    for name in quarantined:
        err.print(f"{name}: quarantined by the malware scanner; not downloaded")
    if not jobs and not waiting:
        err.print(f"ticket {ticket} has no files to download")
    return jobs, waiting


def _fetch_all(
    downloader: Downloader,
    jobs: list[Job],
    headers: dict[str, str],
    gateway: str | None,
    progress: Progress | None,
    err: Console,
) -> list[Result]:
    """Fetch the jobs one after another; a file that fails does not stop the others."""
    results: list[Result] = []
    with shown(progress, err):
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
    return results


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _same_origin(url: str, gateway: str | None) -> bool:
    return gateway is not None and _origin(url) == _origin(gateway)
