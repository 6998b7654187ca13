"""Strict parsers for the text of a setting: each gives a value or raises ValueError.

:mod:`gateway.settings` applies them to environment variables and turns a
``ValueError`` into a one-line :class:`~gateway.errors.ConfigError` naming the
variable. Sizes and durations are in :mod:`gateway.units`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from gateway.units import parse_duration

_TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def choice(*options: str) -> Callable[[str], str]:
    """A parser that takes exactly one of ``options``."""

    def check(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return check


def http_url(text: str) -> str:
    """An http(s) URL with a host, without a trailing slash."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {text!r}")
    return text.rstrip("/")


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"expected a positive number, got {text!r}")
    return value


def wait(text: str) -> int:
    """A duration that may also be ``0`` (no waiting)."""
    return 0 if text.strip() == "0" else parse_duration(text)


def table(text: str) -> str:
    """A ServiceNow table name such as ``incident``."""
    if not _TABLE.fullmatch(text):
        raise ValueError(f"expected a table name such as incident, got {text!r}")
    return text


def desk_id(text: str) -> str:
    """A Jira service desk's numeric id, kept as text."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected the numeric service desk id, got {text!r}")
    return text


def comma_list(text: str) -> tuple[str, ...]:
    """``a, b,,c`` is ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
