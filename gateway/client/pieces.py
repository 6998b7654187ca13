"""How ``gateway download`` cuts a file into pieces and remembers them (pure parts).

A file is fetched as fixed pieces of ``piece_size`` bytes (the last one
shorter), each by one ranged request. What a run has fetched is kept beside
the target in a small JSON state file, written atomically (temp file and
rename) after every piece::

    {"version": 1, "sha256": "...", "size": 123, "piece_size": 8388608,
     "done": {"0": "crc32:1c291ca3", "3": "..."}}

The state names the file by its SHA-256 and size (the link's ETag and
length), not by the link's URL: a fresh link to the same file (a new
listing of the ticket) resumes the same partial file. Each piece's CRC-32,
taken from the bytes as they arrived, lets a resumed run check the bytes
already on disk piece by piece, so a damaged piece is fetched again instead
of failing the whole file. CRC-32 is enough for that (it catches every
error burst up to 32 bits and others but for one chance in 2^32) at a
seventh of SHA-256's cost; the whole file's SHA-256 is the verification.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
MIN_PIECE = 1 * MiB
MAX_PIECE = 32 * MiB
PIECES_PER_CONNECTION = 4
STATE_VERSION = 1
PART_SUFFIX = ".part"
STATE_SUFFIX = ".part.json"


def piece_size_for(size: int, connections: int) -> int:
    """About ``PIECES_PER_CONNECTION`` pieces per connection, 1 to 32 MiB, whole MiB."""
    wanted = -(-size // max(1, connections * PIECES_PER_CONNECTION))
    wanted = -(-wanted // MiB) * MiB
    return max(MIN_PIECE, min(MAX_PIECE, wanted))


def spans(size: int, piece_size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of every piece, end exclusive; one empty piece for an empty file."""
    if piece_size <= 0:
        raise ValueError("piece_size must be positive")
    if size == 0:
        return [(0, 0)]
    return [(start, min(start + piece_size, size)) for start in range(0, size, piece_size)]


class PieceCheck:
    """A piece's CRC-32, fed like a hashlib object; ``hexdigest()`` is ``crc32:xxxxxxxx``."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"crc32:{self.value:08x}"


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def state_path(target: Path) -> Path:
    return target.with_name(target.name + STATE_SUFFIX)


@dataclass
class PieceState:
    """What is known about one partial file: which pieces are on disk, with their hashes."""

    sha256: str
    size: int
    piece_size: int
    done: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sha256": self.sha256,
            "size": self.size,
            "piece_size": self.piece_size,
            "done": {str(index): digest for index, digest in sorted(self.done.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> PieceState | None:
        """The state in ``data``, or None if it is not a state this version wrote."""
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return None
        sha256, size, piece_size, done = (
            data.get("sha256"), data.get("size"), data.get("piece_size"), data.get("done"),
        )  # fmt: skip
        if not (
            isinstance(sha256, str)
            and isinstance(size, int)
            and isinstance(piece_size, int)
            and piece_size > 0
            and size >= 0
            and isinstance(done, dict)
        ):
            return None
        count = len(spans(size, piece_size))
        pieces: dict[int, str] = {}
        for key, digest in done.items():
            if not (isinstance(key, str) and key.isdigit() and isinstance(digest, str)):
                return None
            if int(key) < count:
                pieces[int(key)] = digest
        return cls(sha256=sha256, size=size, piece_size=piece_size, done=pieces)

    def matches(self, sha256: str, size: int) -> bool:
        return self.sha256 == sha256 and self.size == size


def load_state(path: Path) -> PieceState | None:
    try:
        return PieceState.from_json(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


def save_state(path: Path, state: PieceState) -> None:
    """Write atomically: a kill mid-write leaves the previous state, never a broken one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json(), separators=(",", ":")))
    os.replace(tmp, path)
