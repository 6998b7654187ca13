"""Strict parsers and formatters for sizes and durations (pure functions)."""

from __future__ import annotations

import re

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}
_SIZE_RE = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,6}))?\s?([a-zA-Z]{0,3})")

_DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(?:([0-9]{1,12})([smhdw]))+")
_DURATION_PART = re.compile(r"([0-9]{1,12})([smhdw])")

MAX_SIZE = 1 << 62


def parse_size(text: str) -> int:
    """Parse ``20MiB``, ``500MB``, ``1.5GiB``, ``1048576`` into bytes.

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary units (KiB, MiB,
    K, M, G) powers of 1024. Raises ValueError for anything else, negative or
    absurd values included.
    """
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 20MiB, 500MB, 2GiB, 1TB)")
    whole, frac, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}")
    value = int(whole) * factor
    if frac:
        value += int(frac) * factor // (10 ** len(frac))
    if value > MAX_SIZE:
        raise ValueError(f"size too large: {text!r}")
    return value


def parse_duration(text: str) -> int:
    """Parse ``30m``, ``12h``, ``14d``, ``1h30m`` or plain seconds into seconds (> 0)."""
    raw = text.strip().lower()
    if raw.isdigit() and len(raw) <= 12:
        seconds = int(raw)
    elif _DURATION_RE.fullmatch(raw):
        seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(raw))
    else:
        raise ValueError(f"not a duration: {text!r} (examples: 30m, 12h, 14d)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def format_size(n: int) -> str:
    """Human-readable binary size: ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: int) -> str:
    """Compact duration: ``14d``, ``2h``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
