"""The file store's manifest: a multipart object kept as its parts, not a copy.

Completing a multipart upload by concatenating the parts writes every byte a
second time; on a 1 GiB upload that copy costs as much as receiving it. The
file store instead links the part files into a directory owned by the object
and leaves a small manifest at the object's path naming them. A manifest is
told apart from an ordinary object by its first line, :data:`MAGIC`; the store
never writes an ordinary object that starts with it (such a ``put`` becomes a
one-part manifest), so the first bytes are proof.

Pure: encoding, decoding and which byte ranges of which parts a read covers.
The disk work stays in :mod:`gateway.store.file`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"\x00gateway-manifest v1\n"
# 10,000 parts of ["00001", 5368709120] are about 200 KB; anything far larger is not ours.
MAX_SIZE = 2 * 1024 * 1024

_PARTS_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_NAME = re.compile(r"^\d{5}$")


@dataclass(frozen=True)
class Span:
    """``length`` bytes of part file ``name``, starting at ``offset`` in it."""

    name: str
    offset: int
    length: int


@dataclass(frozen=True)
class Manifest:
    """An object made of the files ``parts/<parts_id>/<name>``, in order.

    Every part holds at least one byte, so a read never has to open a file
    only to find nothing in it, and each offset maps to exactly one part.
    """

    parts_id: str
    parts: tuple[tuple[str, int], ...]  # (file name, size)
    etag: str

    def __post_init__(self) -> None:
        if not _PARTS_ID.match(self.parts_id):
            raise ValueError(f"manifest: bad parts directory {self.parts_id!r}")
        if not self.etag:
            raise ValueError("manifest: empty ETag")
        names = [name for name, _ in self.parts]
        if len(set(names)) != len(names):
            raise ValueError("manifest: a part is listed twice")
        for name, size in self.parts:
            if not _PART_NAME.match(name):
                raise ValueError(f"manifest: bad part name {name!r}")
            if type(size) is not int or size <= 0:
                raise ValueError(f"manifest: part {name} has size {size!r}; parts are not empty")

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts)

    def encode(self) -> bytes:
        body = {"etag": self.etag, "dir": self.parts_id, "parts": [list(p) for p in self.parts]}
        return MAGIC + json.dumps(body, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse what :meth:`encode` wrote; ValueError for anything else."""
        if not data.startswith(MAGIC):
            raise ValueError("manifest: missing the manifest line")
        try:
            body = json.loads(data[len(MAGIC) :])
        except ValueError:
            raise ValueError("manifest: body is not JSON") from None
        if not isinstance(body, dict):
            raise ValueError("manifest: body is not an object")
        etag, parts_id, parts = body.get("etag"), body.get("dir"), body.get("parts")
        if not isinstance(etag, str) or not isinstance(parts_id, str):
            raise ValueError("manifest: etag and dir must be strings")
        if not isinstance(parts, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in parts
        ):
            raise ValueError("manifest: parts must be [name, size] pairs")
        return cls(parts_id=parts_id, parts=tuple((p[0], p[1]) for p in parts), etag=etag)

    def spans(self, start: int, end: int | None) -> Iterator[Span]:
        """The pieces of parts that hold bytes ``start`` to ``end`` (exclusive; None = all)."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range start={start} end={end}")
        stop = self.size if end is None else min(end, self.size)
        base = 0
        for name, size in self.parts:
            if base >= stop:
                break
            lo = max(start, base)
            hi = min(stop, base + size)
            if lo < hi:
                yield Span(name=name, offset=lo - base, length=hi - lo)
            base += size
