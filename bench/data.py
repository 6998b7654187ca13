"""Test files, written fast: one random block repeated, each copy stamped with its index.

Reading /dev/urandom for 5 GiB would take longer than uploading it. A 64 MiB
random block repeated with an 8-byte counter at the start of each copy gives
data that no store can deduplicate or compress block-wise, written at disk
speed. The SHA-256 is computed while writing, so receipts can be checked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 64 * 1024 * 1024


@dataclass(frozen=True)
class TestFile:
    path: Path
    size: int
    sha256: str


def make_file(path: Path, size: int, seed_block: bytes | None = None) -> TestFile:
    block = bytearray(
        seed_block if seed_block is not None else os.urandom(min(BLOCK, max(size, 8)))
    )
    digest = hashlib.sha256()
    written = 0
    index = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = memoryview(block)[: min(len(block), size - written)]
            digest.update(piece)
            while piece:
                piece = piece[os.write(fd, piece) :]
            written += min(len(block), size - written)
            index += 1
    finally:
        os.close(fd)
    return TestFile(path=path, size=size, sha256=digest.hexdigest())


class Files:
    """Test files by size, made once per run in one directory and deleted at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._by_size: dict[int, TestFile] = {}

    def get(self, size: int) -> TestFile:
        if size not in self._by_size:
            self._by_size[size] = make_file(self.directory / f"data-{size}.bin", size)
        return self._by_size[size]

    def drop(self, size: int) -> None:
        """Delete a big file as soon as no scenario needs it (disk space)."""
        found = self._by_size.pop(size, None)
        if found is not None:
            found.path.unlink(missing_ok=True)

    def remove_all(self) -> None:
        for size in list(self._by_size):
            self.drop(size)
