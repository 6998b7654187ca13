"""Strict parsers for the HTTP headers the gateway acts on (pure functions).

Each returns a value or raises ValueError with a message fit for a client.
Numbers are plain ASCII digits (no sign, no spaces, no exponent) and at most
19 digits, so nothing overflows and nothing negative slips through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIGITS = re.compile(r"[0-9]{1,19}")
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


def parse_length(value: str | None, name: str = "Content-Length") -> int | None:
    """A non-negative decimal integer header, or None when absent."""
    if value is None:
        return None
    text = value.strip()
    if "," in text:
        parts = {p.strip() for p in text.split(",")}
        if len(parts) != 1:
            raise ValueError(f"{name} has conflicting values")
        text = parts.pop()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(text)


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int  # inclusive
    total: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str) -> ContentRange:
    """``bytes FROM-TO/TOTAL`` (TOTAL may be ``*``), as curl -C sends it."""
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if not match:
        raise ValueError("Content-Range must look like 'bytes FROM-TO/TOTAL'")
    start, end = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if end < start:
        raise ValueError("Content-Range ends before it starts")
    if total is not None and end >= total:
        raise ValueError("Content-Range runs past the total length")
    return ContentRange(start, end, total)


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive


class Unsatisfiable(ValueError):
    """A syntactically valid range that the representation cannot satisfy (416)."""


def parse_range(value: str, size: int) -> ByteRange | None:
    """One ``bytes=`` range against a representation of ``size`` bytes.

    Returns None when the header should be ignored (not bytes, several
    ranges, malformed), as RFC 9110 allows; raises :class:`Unsatisfiable`
    for a range wholly past the end.
    """
    text = value.strip()
    if "," in text:
        return None
    match = _RANGE.fullmatch(text)
    if not match:
        return None
    first, last = match[1], match[2]
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable("empty suffix range")
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if start >= size:
        raise Unsatisfiable("range starts past the end")
    end = size if last == "" else min(size, int(last) + 1)
    if end <= start:
        return None
    return ByteRange(start, end)


def etag_matches(if_range: str, etag: str) -> bool:
    """If-Range with an entity tag: only a strong, exact match counts."""
    value = if_range.strip()
    return not value.startswith("W/") and value == etag
