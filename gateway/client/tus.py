"""The tus 1.0 requests ``gateway upload`` makes, each retried on transient failure.

:class:`Tus` speaks to one upload link's tus endpoint: what the server offers
(``OPTIONS``), creating uploads (whole files, partials, the final upload that
joins them), where an upload stands (``HEAD``), and the receipt that proves
what the server stored. Requests other than ``PATCH`` are retried here on
network errors, 5xx, 423, 429 and 460 with backoff honouring ``Retry-After``;
a ``PATCH`` is retried by its sender (:mod:`gateway.client.send`), which asks
the server where the upload stands first.
"""

from __future__ import annotations

import base64
import mimetypes
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from gateway.client import retry
from gateway.client.outcome import Failed, message, reason
from gateway.client.streams import Offer, Part, Span, final_header

TUS = {"Tus-Resumable": "1.0.0"}
TIMEOUT = httpx.Timeout(connect=15.0, read=300.0, write=120.0, pool=60.0)


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


def metadata(path: Path) -> str:
    """``Upload-Metadata``: the file's name and, when known, its media type."""
    value = f"filename {_b64(path.name)}"
    kind, _ = mimetypes.guess_type(path.name)
    if kind:
        value += f",filetype {_b64(kind)}"
    return value


def refused(response: httpx.Response) -> Failed:
    return Failed(reason(response), message(response))


def final_of(response: httpx.Response) -> tuple[str, str | None]:
    """A final upload's URL, and the file id if the server joined the partials before
    answering; any refusal fails the file."""
    if response.status_code != 201 or "location" not in response.headers:
        raise refused(response)
    done = "upload-offset" in response.headers
    file_id: str | None = response.headers.get("x-gateway-file-id") if done else None
    return response.headers["location"], file_id


class Tus:
    """One upload link's tus endpoint, over one shared :class:`httpx.Client`."""

    def __init__(self, client: httpx.Client, link: str, retries: int) -> None:
        self.client = client
        self.link = link
        self.endpoint = f"{link}/tus/"
        self.retries = retries
        self._offer: Offer | None = None
        self._asked = threading.Lock()

    def wait(self, attempt: int, response: httpx.Response | None) -> None:
        """Sleep before retry ``attempt`` (backoff, or what the response's hint asks)."""
        header = None if response is None else response.headers.get("retry-after")
        time.sleep(retry.delay(attempt, header, time.time()))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on transient failure (network errors, 5xx, 423, 429...);
        a 409 is returned, for the caller to ask where the upload stands."""
        last = ""
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = self.client.request(method, url, **kwargs)
                if not retry.retryable(response.status_code) or response.status_code == 409:
                    return response
                last = reason(response)
            except httpx.TransportError as exc:
                last = "network"
                if attempt == self.retries:
                    raise Failed("network", str(exc)) from exc
            if attempt < self.retries:
                self.wait(attempt, response)
        raise Failed(last or "network")

    def head(self, url: str) -> httpx.Response:
        return self.request("HEAD", url, headers=TUS)

    def offer(self) -> Offer:
        """What the server's ``OPTIONS`` says (asked once), with the round trip: the
        shortest of three answers, the later ones on the connection the first opened."""
        with self._asked:
            if self._offer is None:
                response = self.request("OPTIONS", self.endpoint, headers=TUS)
                if response.status_code in (200, 204):
                    rtt = response.elapsed.total_seconds()
                    for _ in range(2):
                        again = self.request("OPTIONS", self.endpoint, headers=TUS)
                        rtt = min(rtt, again.elapsed.total_seconds())
                    headers = response.headers
                    self._offer = Offer.parse(
                        headers.get("tus-extension"), headers.get("tus-max-size"), rtt
                    )
                else:
                    self._offer = Offer(concatenation=False)
            return self._offer

    def create(self, size: int, path: Path) -> tuple[str, str | None]:
        """A new upload of the whole file: its URL, and the file id if it is already
        complete (an empty file)."""
        headers = {**TUS, "Upload-Length": str(size), "Upload-Metadata": metadata(path)}
        response = self.request("POST", self.endpoint, headers=headers)
        if response.status_code != 201 or "location" not in response.headers:
            raise refused(response)
        return response.headers["location"], response.headers.get("x-gateway-file-id")

    def create_partial(self, span: Span) -> str:
        """A new partial upload (``Upload-Concat: partial``) for ``span``: its URL."""
        headers = {**TUS, "Upload-Concat": "partial", "Upload-Length": str(span.length)}
        response = self.request("POST", self.endpoint, headers=headers)
        if response.status_code != 201 or "location" not in response.headers:
            raise refused(response)
        return response.headers["location"]

    def post_final(self, parts: list[Part], path: Path) -> httpx.Response:
        """POST the final upload that joins ``parts``.

        Safe to repeat after a network error: the server answers a repeated POST with
        the final upload it is already joining, or with the file it already made."""
        headers = {**TUS, "Upload-Concat": final_header(parts), "Upload-Metadata": metadata(path)}
        return self.request("POST", self.endpoint, headers=headers)

    def where(self, url: str, span: Span) -> tuple[int, str | None]:
        """Where the upload carrying ``span`` stands (after a failure): a file position,
        and the file id if the upload is complete."""
        response = self.head(url)
        if response.status_code in (404, 410):
            raise Failed(f"http-{response.status_code}", "the upload is gone on the server")
        if response.status_code != 200:
            raise refused(response)
        offset = span.start + int(response.headers.get("upload-offset", "0"))
        done = response.headers.get("x-gateway-file-id") if offset >= span.end else None
        return offset, done

    def await_final(self, url: str) -> str:
        """Poll the final upload until the server has joined the partials (a HEAD also
        restarts a join that a server restart interrupted): the file id."""
        while True:
            response = self.head(url)
            if response.status_code != 200:
                raise refused(response)
            file_id: str = response.headers.get("x-gateway-file-id", "")
            if file_id:
                return file_id
            time.sleep(retry.poll_delay(response.headers.get("retry-after"), time.time()))

    def delete_all(self, urls: Iterable[str]) -> None:
        """Ask the server to remove these uploads (best effort, not retried: it also
        sweeps them when the link expires)."""
        for url in urls:
            try:
                self.client.delete(url, headers=TUS)
            except httpx.HTTPError:
                pass

    def check_receipt(self, file_id: str, size: int, digest: str) -> None:
        """The server's receipt for ``file_id`` names this size and SHA-256, or the file fails."""
        response = self.request("GET", f"{self.link}/files", headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise Failed("no-receipt", message(response))
        for receipt in response.json().get("files", []):
            if receipt.get("file_id") == file_id:
                if receipt.get("size") != size or receipt.get("sha256") != digest:
                    raise Failed("checksum-mismatch", "the server stored different bytes")
                return
        raise Failed("no-receipt", "the server has no receipt for the file")
