"""How S3 joins objects without the bytes passing through the gateway: a part plan.

S3 has no "concatenate" call, but a multipart upload may take a part as a
byte range of an existing object (UploadPartCopy), copied inside the server.
The rules still hold: every part but the last holds at least 5 MiB and at
most 5 GiB. Sources are of any size, so the plan copies every run of at
least the minimum as one or more ranges and gathers what is too small to
stand alone (a short source, or the head of the next source that tops it up
to the minimum) into a part whose bytes the gateway reads and sends. Such a
part holds less than twice the minimum, so at most about 10 MiB pass
through the gateway per short piece.

Pure: sizes in, parts out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_PART = 5 * 1024 * 1024
MAX_PART = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10000


@dataclass(frozen=True)
class Piece:
    """Bytes ``start`` to ``end`` (exclusive) of source number ``source``."""

    source: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class PlannedPart:
    """One part: a single piece copied inside the store, or pieces read and sent."""

    pieces: tuple[Piece, ...]
    copy: bool

    @property
    def size(self) -> int:
        return sum(piece.size for piece in self.pieces)


def plan(
    sizes: Sequence[int], *, min_part: int = MIN_PART, max_part: int = MAX_PART
) -> list[PlannedPart]:
    """The parts that join sources of ``sizes`` in order (empty for no bytes at all).

    Copied parts are single pieces of ``min_part`` to ``max_part`` bytes;
    sent parts hold at least ``min_part`` and less than twice that, except
    the last part, which may be smaller. ValueError past S3's 10,000 parts.
    """
    if min_part < 1 or max_part < 2 * min_part:
        raise ValueError(f"bad part limits min={min_part} max={max_part}")
    parts: list[PlannedPart] = []
    pending: list[Piece] = []
    pending_size = 0

    def send() -> None:
        nonlocal pending_size
        parts.append(PlannedPart(pieces=tuple(pending), copy=False))
        pending.clear()
        pending_size = 0

    for index, size in enumerate(sizes):
        if size < 0:
            raise ValueError(f"source {index} has size {size}")
        position = 0
        if pending_size and size:
            # Top the gathered bytes up to the minimum from this source's head; if what
            # would remain is too short to be copied on its own, gather it all.
            need = min_part - pending_size
            take = size if size - need < min_part else need
            pending.append(Piece(index, 0, take))
            pending_size += take
            position = take
            if pending_size >= min_part:
                send()
        rest = size - position
        if rest == 0:
            continue
        if rest < min_part:
            pending.append(Piece(index, position, size))
            pending_size += rest
            continue
        count = -(-rest // max_part)
        for k in range(count):
            lo = position + rest * k // count
            hi = position + rest * (k + 1) // count
            parts.append(PlannedPart(pieces=(Piece(index, lo, hi),), copy=True))
    if pending:
        send()
    if len(parts) > MAX_PARTS:
        raise ValueError(f"joining these sources takes {len(parts)} parts; S3 allows {MAX_PARTS}")
    return parts
