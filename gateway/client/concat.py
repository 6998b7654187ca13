"""One file as partial uploads sent at once, joined by a final upload (tus concatenation).

The ranges come from :func:`gateway.client.streams.choose`. Every partial goes
up on its own thread and connection; the whole file is hashed in order on
another meanwhile. The state file remembers the partials (and the final once
it exists), so a re-run continues them, or waits for the final, or, when the
server no longer has them, forgets them and the file starts over.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from gateway.client import streams
from gateway.client.reader import sha256_of
from gateway.client.send import Job, Sender, Stream
from gateway.client.state import StateFile
from gateway.client.streams import Part, Span
from gateway.client.tus import final_of


class Joiner:
    """Partial uploads of one link, sent by ``sender`` and remembered in ``states``."""

    def __init__(self, sender: Sender, states: StateFile) -> None:
        self.sender = sender
        self.tus = sender.tus
        self.states = states

    def start(self, job: Job, spans: list[Span]) -> tuple[str, str]:
        """Create a partial per span (all at once: one round trip, not one each), send
        them all and join them: file id and SHA-256."""
        with concurrent.futures.ThreadPoolExecutor(len(spans), "create") as pool:
            urls = list(pool.map(self.tus.create_partial, spans))
        parts = [Part(url, span) for url, span in zip(urls, spans, strict=True)]
        self._remember(job, streams.parts_entry(parts))
        return self._run(job, parts, offsets=[0] * len(parts))

    def resume(self, job: Job, parts: list[Part], entry: dict[str, Any]) -> tuple[str, str] | None:
        """Continue remembered partials, or wait for their final upload. None when the
        server no longer has them, after forgetting them: the file starts over."""
        final = streams.read_final(entry, self.tus.endpoint)
        if final is not None:
            if self.tus.head(final).status_code == 200:
                return self._run(job, parts, final=final)
        else:
            offsets = self._offsets(parts)
            present = [offset for offset in offsets or [] if offset is not None]
            if len(present) == len(parts):
                return self._run(job, parts, offsets=present)
            if offsets is not None:
                # Gone: the server joined them already (the answer to our final POST was
                # lost, and the same POST now names that file) or they expired.
                response = self.tus.post_final(parts, job.path)
                if response.status_code not in (400, 404, 410):
                    final, file_id = final_of(response)
                    return self._run(job, parts, final=final, file_id=file_id)
        self.states.drop(job.key)
        self.tus.delete_all(part.url for part in parts)
        return None

    def _remember(self, job: Job, entry: dict[str, Any]) -> None:
        self.states.remember(job.key, job.path, job.size, entry)

    def _offsets(self, parts: list[Part]) -> list[int | None] | None:
        """Where each partial stands (None for one the server no longer has), or None
        if one is not what we remember."""
        offsets: list[int | None] = []
        for part in parts:
            response = self.tus.head(part.url)
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

    def _run(
        self,
        job: Job,
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
            hashing = pool.submit(sha256_of, job.path, job.size, stop)
            try:
                if final is None:
                    self._send_all(job, parts, offsets or [0] * len(parts), pool, stop)
                    final, file_id = final_of(self.tus.post_final(parts, job.path))
                for index, part in enumerate(parts):
                    job.meter.at(index, part.span.length)
                if file_id is None:
                    self._remember(job, streams.parts_entry(parts, final))
                    job.meter.note("assembling")
                    file_id = self.tus.await_final(final)
                    job.meter.note()
                return file_id, hashing.result()
            except BaseException:
                stop.set()
                raise

    def _send_all(
        self,
        job: Job,
        parts: list[Part],
        offsets: list[int],
        pool: concurrent.futures.Executor,
        stop: threading.Event,
    ) -> None:
        """Every partial at once, each in order from its offset; the first failure stops
        the others (after their current chunk) and is raised."""
        futures: list[concurrent.futures.Future[str | None]] = []
        for index, (part, offset) in enumerate(zip(parts, offsets, strict=True)):
            stream = Stream(index, part.url, part.span, job.meter, stop)
            job.meter.at(index, offset)
            if offset < part.span.length:
                start = part.span.start + offset
                futures.append(pool.submit(self.sender.send, job.path, stream, start, None))
        if not futures:
            return
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in futures:
            if future in done and (error := future.exception()) is not None:
                stop.set()
                concurrent.futures.wait(futures)
                raise error
