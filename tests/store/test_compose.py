"""Joining objects inside the store (tus concatenation), on the file store and S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.store import ObjectStore
from gateway.store.base import StorageError
from gateway.store.compose import MIN_PART, Piece, PlannedPart, plan
from gateway.store.file import FileStore
from gateway.store.manifest import Manifest
from tests.store.conftest import StoreFactory, run

MiB = 1024 * 1024


async def collect(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def multipart(store: ObjectStore, key: str, pieces: list[bytes]) -> None:
    upload_id = await store.create_multipart(key)
    parts = [
        await store.upload_part(key, upload_id, number, memoryview(piece))
        for number, piece in enumerate(pieces, start=1)
    ]
    await store.complete_multipart(key, upload_id, parts)


def test_compose_joins_sources_of_any_size(new_store: StoreFactory) -> None:
    blobs = {
        "src/a": os.urandom(6 * MiB + 1),  # copied whole
        "src/b": os.urandom(3),  # too short: sent, with the head of the next one
        "src/c": b"",
        "src/d": os.urandom(5 * MiB + 7),  # tops b up; its rest is too short, so sent too
        "src/e": os.urandom(MiB),
        "src/f": os.urandom(2),  # the last, short part
    }
    multi = [os.urandom(5 * MiB), os.urandom(MiB + 5)]

    async def scenario(store: ObjectStore) -> None:
        for key, data in blobs.items():
            await store.put(key, data)
        await multipart(store, "src/m", multi)
        sources = ["src/a", "src/m", "src/b", "src/c", "src/d", "src/e", "src/f"]
        whole = blobs["src/a"] + b"".join(multi) + b"".join(blobs[k] for k in sources[2:])
        etag = await store.compose("out/joined", sources, content_type="application/pdf")
        info = await store.head("out/joined")
        assert info is not None
        assert (info.size, info.etag) == (len(whole), etag)
        assert await collect(store, "out/joined") == whole
        across = 6 * MiB - 10
        assert (
            await collect(store, "out/joined", across, across + 2 * MiB)
            == whole[across : across + 2 * MiB]
        )
        # The sources stay whole; deleting them leaves the joined object alone.
        assert await collect(store, "src/m") == b"".join(multi)
        for key in sources:
            await store.delete(key)
        assert await collect(store, "out/joined") == whole
        assert await store.list_multipart("out/") == []

    run(new_store(), scenario)


def test_compose_of_short_and_empty_sources(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("s/1", b"abc")
        await store.put("s/2", b"")
        await store.put("s/3", b"de")
        await store.compose("o/short", ["s/1", "s/2", "s/3"])
        assert await store.get("o/short") == b"abcde"
        await store.compose("o/empty", ["s/2"])
        assert await store.get("o/empty") == b""
        info = await store.head("o/empty")
        assert info is not None and info.size == 0

    run(new_store(), scenario)


def test_compose_with_a_missing_source_writes_nothing(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("s/1", os.urandom(6 * MiB))
        with pytest.raises(KeyError, match="s/gone"):
            await store.compose("o/x", ["s/1", "s/gone"])
        assert await store.head("o/x") is None
        assert await store.list_multipart("o/") == []

    run(new_store(), scenario)


def test_compose_replaces_an_existing_object(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("o/x", b"old")
        await store.put("s/1", b"new")
        await store.compose("o/x", ["s/1"])
        assert await store.get("o/x") == b"new"

    run(new_store(), scenario)


def test_file_store_compose_copies_no_bytes(tmp_path: Path) -> None:
    """The joined object's files are the sources' files (hard links), not copies."""
    root = tmp_path / "store"
    store = FileStore(root)

    async def scenario(store: ObjectStore) -> None:
        await store.put("s/1", os.urandom(MiB))
        await multipart(store, "s/2", [os.urandom(5 * MiB), os.urandom(3)])
        await store.compose("o/x", ["s/1", "s/2"])

    run(store, scenario)
    manifest = Manifest.decode((root / "objects" / "o" / "x").read_bytes())
    files = [root / "parts" / manifest.parts_id / name for name, _ in manifest.parts]
    assert len(files) == 3  # s/1's file and s/2's two parts
    assert all(path.stat().st_nlink == 2 for path in files)
    assert files[0].stat().st_ino == (root / "objects" / "s" / "1").stat().st_ino


# -- the plan (pure) ------------------------------------------------------------


def _check(sizes: list[int], parts: list[PlannedPart], min_part: int, max_part: int) -> None:
    pieces = [piece for part in parts for piece in part.pieces]
    # In order, every byte once.
    expected = [(i, 0, s) for i, s in enumerate(sizes) if s]
    merged: list[tuple[int, int, int]] = []
    for piece in pieces:
        assert piece.size > 0
        if merged and merged[-1][0] == piece.source and merged[-1][2] == piece.start:
            merged[-1] = (piece.source, merged[-1][1], piece.end)
        else:
            merged.append((piece.source, piece.start, piece.end))
    assert merged == expected
    for index, part in enumerate(parts):
        if part.copy:
            assert len(part.pieces) == 1 and min_part <= part.size <= max_part
        else:
            assert part.size < 2 * min_part
        if index < len(parts) - 1:
            assert part.size >= min_part


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [0, 0],
        [3],
        [10, 20, 30],
        [MIN_PART],
        [MIN_PART - 1, MIN_PART - 1, MIN_PART - 1],
        [1, 3 * MIN_PART, 1],
        [MIN_PART - 1, MIN_PART + 1, 2],
        [7 * MIN_PART, 2 * MIN_PART + 3, MIN_PART - 1, 1, 9 * MIN_PART],
        [256 * MiB] * 4,
        [11 * MIN_PART + 1],  # split in ranges no larger than max_part
    ],
)
def test_plan_covers_every_byte_within_the_part_rules(sizes: list[int]) -> None:
    parts = plan(sizes)
    _check(sizes, parts, MIN_PART, 5 * 1024 * MiB)
    small = plan(sizes, min_part=MIN_PART, max_part=2 * MIN_PART)
    _check(sizes, small, MIN_PART, 2 * MIN_PART)


def test_plan_copies_large_sources_whole() -> None:
    parts = plan([256 * MiB] * 4)
    assert [(p.copy, p.pieces) for p in parts] == [
        (True, (Piece(i, 0, 256 * MiB),)) for i in range(4)
    ]
    assert plan([3, 2]) == [PlannedPart(pieces=(Piece(0, 0, 3), Piece(1, 0, 2)), copy=False)]


def test_plan_refuses_more_parts_than_s3_allows() -> None:
    with pytest.raises(ValueError, match="10000"):
        plan([MIN_PART] * 10001)


@pytest.mark.parametrize("shape", ["plain", "multipart"])
def test_copy_part_makes_an_object_a_part_of_another_upload(
    new_store: StoreFactory, shape: str
) -> None:
    """A segment (an object of its own) becomes one part of the file's upload."""
    head, segment, tail = os.urandom(5 * MiB), os.urandom(11 * MiB + 7), os.urandom(9)

    async def scenario(store: ObjectStore) -> None:
        if shape == "plain":
            await store.put("up/seg.2", segment)
        else:
            await multipart(store, "up/seg.2", [segment[: 6 * MiB], segment[6 * MiB :]])
        upload_id = await store.create_multipart("up/data")
        first = await store.upload_part("up/data", upload_id, 1, memoryview(head))
        copied = await store.copy_part("up/data", upload_id, 2, "up/seg.2")
        assert (copied.number, copied.size) == (2, len(segment))
        last = await store.upload_part("up/data", upload_id, 3, memoryview(tail))
        listed = await store.list_parts("up/data", upload_id)
        assert [(p.number, p.size) for p in listed] == [(1, 5 * MiB), (2, len(segment)), (3, 9)]
        assert listed[1].etag == copied.etag
        await store.delete("up/seg.2")  # the part does not need its source any more
        await store.complete_multipart("up/data", upload_id, [first, copied, last])
        assert await collect(store, "up/data") == head + segment + tail

    run(new_store(), scenario)


def test_copy_part_of_a_missing_object_or_upload_is_a_key_error(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("up/data")
        with pytest.raises(KeyError):
            await store.copy_part("up/data", upload_id, 1, "up/nothing")
        await store.put("up/seg.1", os.urandom(MiB))
        await store.abort_multipart("up/data", upload_id)
        with pytest.raises((KeyError, StorageError)):  # S3 says the upload vanished
            await store.copy_part("up/data", upload_id, 1, "up/seg.1")

    run(new_store(), scenario)
