"""What a download link says about its file (``HEAD``), and what became of each file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote, urlsplit

import httpx

from gateway.filenames import clean_filename

TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=60.0, pool=120.0)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# RFC 6266 / 5987: filename*=UTF-8''percent-encoded (preferred over the plain filename=)
_EXTENDED_NAME = re.compile(r"filename\*\s*=\s*(UTF-8|ISO-8859-1)'[^']*'([^;\s]+)", re.I)


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
