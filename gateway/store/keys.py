"""Key and prefix validation shared by the stores.

Keys are built by the gateway itself, never taken from a client, so a bad key
is a bug. The checks are defence in depth: a key that could climb out of the
file store's root (``..``, an absolute path, a backslash, NUL) or that S3 would
treat differently from a directory tree (empty segments) is refused with
:class:`ValueError` before it reaches the disk or the wire.
"""

from __future__ import annotations

_FORBIDDEN_CHARS = ("\\", "\x00")


def _check_text(value: str, what: str) -> None:
    for char in _FORBIDDEN_CHARS:
        if char in value:
            raise ValueError(f"{what} {value!r} contains a forbidden character {char!r}")
    if value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be relative (no leading '/')")


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe, relative, ``/``-separated key."""
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")
    _check_text(key, "key")
    for segment in key.split("/"):
        if segment == "":
            raise ValueError(f"key {key!r} has an empty segment")
        if segment in (".", ".."):
            raise ValueError(f"key {key!r} has a {segment!r} segment")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged if it is a safe listing prefix.

    A prefix may be empty, end with ``/`` or stop inside a segment; its
    complete segments follow the same rules as keys.
    """
    if not isinstance(prefix, str):
        raise ValueError("prefix must be a string")
    if not prefix:
        return prefix
    _check_text(prefix, "prefix")
    segments = prefix.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "" and not last:
            raise ValueError(f"prefix {prefix!r} has an empty segment")
        if segment in (".", "..") and not last:
            raise ValueError(f"prefix {prefix!r} has a {segment!r} segment")
        if last and segment == "..":
            raise ValueError(f"prefix {prefix!r} ends with '..'")
    return prefix
