"""Strict parsers for the tus 1.0.0 request headers (pure functions).

Each parser returns a value or raises :class:`ValueError` with a message fit
for a client (rendered as 400), so malformed input can never reach the
engine or crash a handler. :class:`UnknownAlgorithm` is the one ValueError
the tus edge renders differently (the checksum extension's own 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from email.utils import formatdate

from gateway.uploads.records import MAX_PARTIALS

TUS_VERSION = "1.0.0"
CHECKSUM_ALGORITHMS: dict[str, int] = {"sha1": 20, "md5": 16, "sha256": 32}

# Upload-Metadata limits: room for a file name, a type and a few more keys, no more.
MAX_METADATA_LENGTH = 4096  # characters of the whole header value
MAX_METADATA_PAIRS = 32
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 2048  # bytes of one decoded value
_DIGITS = re.compile(r"[0-9]{1,19}")
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII except ','
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class UnknownAlgorithm(ValueError):
    """An Upload-Checksum algorithm this server does not offer."""


def parse_number(value: str, name: str) -> int:
    """A non-negative decimal: ASCII digits only, no sign, no spaces, at most 19 digits."""
    if not _DIGITS.fullmatch(value):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value)


def parse_defer_length(value: str) -> bool:
    """``Upload-Defer-Length`` has exactly one legal value, ``1``."""
    if value != "1":
        raise ValueError("Upload-Defer-Length must be 1")
    return True


def _b64decode(text: str, what: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise ValueError(f"{what} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern already guards
        raise ValueError(f"{what} is not valid base64") from None


def parse_metadata(value: str) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs.

    Keys are visible ASCII without spaces or commas, unique and non-empty; a
    value may be absent (empty). The header is at most
    :data:`MAX_METADATA_LENGTH` characters, with at most
    :data:`MAX_METADATA_PAIRS` keys of :data:`MAX_KEY_LENGTH` characters and
    values of :data:`MAX_VALUE_LENGTH` decoded bytes. Whitespace around a pair is tolerated, as
    some clients write ``", "`` between pairs. An empty header means no
    metadata.
    """
    result: dict[str, bytes] = {}
    if len(value) > MAX_METADATA_LENGTH:
        raise ValueError(
            f"Upload-Metadata is {len(value)} characters long; at most {MAX_METADATA_LENGTH} "
            "are accepted"
        )
    if not value.strip(" \t"):
        return result
    pairs = value.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise ValueError(f"Upload-Metadata has more than {MAX_METADATA_PAIRS} keys")
    for pair in pairs:
        item = pair.strip(" \t")
        if not item:
            raise ValueError("Upload-Metadata has an empty pair")
        key, sep, encoded = item.partition(" ")
        if not _KEY.fullmatch(key) or len(key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"Upload-Metadata has an invalid key (visible ASCII, at most {MAX_KEY_LENGTH})"
            )
        if sep and (not encoded or " " in encoded or "\t" in encoded):
            raise ValueError(f"Upload-Metadata value of {key!r} is malformed")
        if key in result:
            raise ValueError(f"Upload-Metadata repeats the key {key!r}")
        raw = _b64decode(encoded, f"Upload-Metadata value of {key!r}") if sep else b""
        if len(raw) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"Upload-Metadata value of {key!r} is {len(raw)} bytes long; "
                f"at most {MAX_VALUE_LENGTH} are accepted"
            )
        result[key] = raw
    return result


def format_metadata(metadata: dict[str, bytes]) -> str:
    """The inverse of :func:`parse_metadata` (for HEAD responses)."""
    return ",".join(
        f"{key} {base64.b64encode(raw).decode('ascii')}" if raw else key
        for key, raw in metadata.items()
    )


def parse_checksum(value: str) -> tuple[str, bytes]:
    """``Upload-Checksum: ALGO BASE64DIGEST`` -> (algorithm, digest).

    The algorithm must be one of :data:`CHECKSUM_ALGORITHMS` (else
    :class:`UnknownAlgorithm`) and the digest must have its length.
    """
    algorithm, sep, encoded = value.partition(" ")
    if not sep or not algorithm or not encoded:
        raise ValueError("Upload-Checksum must look like 'ALGORITHM BASE64DIGEST'")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UnknownAlgorithm(
            f"Unsupported checksum algorithm; use one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    digest = _b64decode(encoded, "Upload-Checksum digest")
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]:
        raise ValueError(f"Upload-Checksum digest has the wrong length for {algorithm}")
    return algorithm, digest


def parse_concat(value: str) -> list[str] | None:
    """``Upload-Concat``: ``partial`` -> None; ``final;URL URL...`` -> the upload ids.

    Each URL (absolute or a path) must end in ``/tus/{id}``; the ids are
    returned in order, unchecked (the engine decides whether they exist).
    """
    if value == "partial":
        return None
    kind, sep, urls = value.partition(";")
    if kind != "final" or not sep:
        raise ValueError("Upload-Concat must be 'partial' or 'final;URL URL...'")
    parts = urls.split()
    if not parts:
        raise ValueError("Upload-Concat 'final' names no partial uploads")
    if len(parts) > MAX_PARTIALS:
        raise ValueError(f"Upload-Concat names more than {MAX_PARTIALS} partial uploads")
    ids: list[str] = []
    for url in parts:
        path = url.split("?", 1)[0].split("#", 1)[0]
        head, sep, upload_id = path.rpartition("/tus/")
        if not sep or not upload_id or "/" in upload_id:
            raise ValueError(f"Upload-Concat URL {url[:200]!r} is not an upload URL of this server")
        ids.append(upload_id)
    return ids


def new_hash(algorithm: str) -> hashlib._Hash:
    """A fresh hash object for an algorithm :func:`parse_checksum` accepted."""
    return hashlib.new(algorithm, usedforsecurity=False)


def http_date(timestamp: float) -> str:
    """RFC 9110 IMF-fixdate, as ``Upload-Expires`` wants it."""
    return formatdate(timestamp, usegmt=True)
