"""Partner-supplied file names: hostile until cleaned (pure functions).

The name a partner sends is kept for display and ``Content-Disposition``
after :func:`clean_filename`; it never becomes part of a path or a key (keys
use random ids). :func:`content_disposition` renders RFC 6266 with an ASCII
fallback and an RFC 5987 ``filename*`` for the rest.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
_FORBIDDEN = set('/\\:*?"<>|')
_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}  # fmt: skip


def clean_filename(raw: str, fallback: str = "upload.bin") -> str:
    """A display-safe version of a partner's file name.

    Keeps the last path segment only, drops control and format characters,
    replaces characters that are special in common file systems, trims dots
    and spaces, and caps the UTF-8 length at 255 bytes (keeping the
    extension). Never returns an empty name, ``.`` or ``..``.
    """
    name = unicodedata.normalize("NFC", raw)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    chars = []
    for ch in name:
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp"):
            continue  # control, format (bidi overrides), surrogates, unassigned
        chars.append("_" if ch in _FORBIDDEN else ch)
    name = "".join(chars).strip(" .")
    if not name:
        return fallback
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _RESERVED:
        name = f"_{name}"
    if len(name.encode()) > MAX_NAME_BYTES:
        suffix = f".{ext}" if dot and len(ext.encode()) <= 16 else ""
        budget = MAX_NAME_BYTES - len(suffix.encode())
        base = (stem if suffix else name).encode()[:budget].decode("utf-8", "ignore")
        name = base + suffix
    return name or fallback


def unique_names(names: list[str], fallback: str = "download.bin") -> list[str]:
    """The names, cleaned, with later duplicates told apart as ``stem (2).ext``.

    For many files in one place (a ZIP of a ticket, a download directory).
    """
    seen: set[str] = set()
    result = []
    for raw in names:
        name = clean_filename(raw, fallback=fallback)
        candidate, number = name, 1
        while candidate in seen:
            number += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem} ({number}).{ext}" if dot and stem else f"{name} ({number})"
        seen.add(candidate)
        result.append(candidate)
    return result


def ascii_fallback(name: str) -> str:
    """An ASCII-only rendering for the plain ``filename=`` parameter."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    safe = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\%;' else "_" for ch in folded)
    return safe.strip(" .") or "download.bin"


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """``attachment; filename="..."; filename*=UTF-8''...`` for any cleaned name."""
    fallback = ascii_fallback(name)
    header = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def guess_content_type(name: str, declared: str | None = None) -> str:
    """The declared type if it is a plain ``type/subtype``, else by extension."""
    import mimetypes

    if declared:
        base = declared.split(";", 1)[0].strip().lower()
        if (
            base.count("/") == 1
            and len(base) <= 100
            and all(c.isalnum() or c in "/.+-_" for c in base)
            and base != "application/offset+octet-stream"
        ):
            return base
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"
