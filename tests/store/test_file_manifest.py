"""The file store completes multipart uploads as manifests over the parts, not copies."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TypeVar

import aiofiles
import pytest

import gateway.store.file.multipart as multipart_module
from gateway.store import ObjectStore, Part, StorageError
from gateway.store.file import FileStore
from gateway.store.file.disk import _etag
from gateway.store.manifest import MAGIC, Manifest

T = TypeVar("T")
MiB = 1024 * 1024
SMALL_PART = 1000  # the 5 MiB minimum shrunk, so tests need no big files


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipart_module, "MIN_PART", SMALL_PART)


def run(store: FileStore, scenario: Callable[[FileStore], Coroutine[object, object, T]]) -> T:
    return asyncio.run(scenario(store))


async def collect(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def upload(store: ObjectStore, key: str, pieces: list[bytes]) -> tuple[str, list[Part]]:
    """A whole multipart upload of ``pieces``; returns the ETag and the parts."""
    upload_id = await store.create_multipart(key)
    parts = [
        await store.upload_part(key, upload_id, number, memoryview(piece))
        for number, piece in enumerate(pieces, start=1)
    ]
    return await store.complete_multipart(key, upload_id, parts), parts


def object_file(store: FileStore, key: str) -> Path:
    return store.root / "objects" / key


def manifest_of(store: FileStore, key: str) -> Manifest:
    return Manifest.decode(object_file(store, key).read_bytes())


def parts_dirs(store: FileStore) -> list[str]:
    return sorted(os.listdir(store.root / "parts"))


def test_completion_links_the_parts_behind_a_manifest(tmp_path: Path, small_parts: None) -> None:
    pieces = [os.urandom(1500), os.urandom(2000), os.urandom(10)]
    data = b"".join(pieces)
    store = FileStore(tmp_path)

    async def scenario(store: FileStore) -> None:
        etag, parts = await upload(store, "up/obj", pieces)
        manifest = manifest_of(store, "up/obj")
        assert [size for _, size in manifest.parts] == [1500, 2000, 10]
        assert etag == manifest.etag and etag.endswith("-3")
        assert parts_dirs(store) == [manifest.parts_id]
        # No copy: each part file of the object is the very inode that was uploaded
        # (a part's ETag names its inode).
        for (name, _), part in zip(manifest.parts, parts, strict=True):
            stat = os.stat(store.root / "parts" / manifest.parts_id / name)
            assert _etag(stat) == part.etag
        assert os.listdir(store.root / "multipart") == []

        info = await store.head("up/obj")
        assert info is not None and (info.size, info.etag) == (len(data), etag)
        [listed] = await store.list("up/")
        assert (listed.key, listed.size, listed.etag) == ("up/obj", len(data), etag)
        assert await store.get("up/obj") == data

    run(store, scenario)


def test_ranges_across_part_boundaries(tmp_path: Path, small_parts: None) -> None:
    sizes = [1024, 1500, 1024, 7]
    pieces = [os.urandom(size) for size in sizes]
    data = b"".join(pieces)
    edges = [0, 1024, 2524, 3548, len(data)]
    points = sorted({max(0, e + d) for e in edges for d in (-2, -1, 0, 1, 2)} | {len(data) + 5})

    async def scenario(store: FileStore) -> None:
        await upload(store, "r", pieces)
        assert object_file(store, "r").read_bytes().startswith(MAGIC)
        for start in points:
            assert await collect(store, "r", start) == data[start:], start
            for end in points:
                if end >= start:
                    assert await collect(store, "r", start, end) == data[start:end], (start, end)
        with pytest.raises(ValueError):
            await collect(store, "r", 10, 5)

    run(FileStore(tmp_path), scenario)


def test_reads_of_big_parts_come_in_chunks_of_at_most_a_mebibyte(tmp_path: Path) -> None:
    pieces = [os.urandom(5 * MiB), os.urandom(MiB + 3)]
    data = b"".join(pieces)

    async def scenario(store: FileStore) -> None:
        await upload(store, "big", pieces)
        chunks = [chunk async for chunk in store.read("big", 7)]
        assert all(0 < len(chunk) <= MiB for chunk in chunks)
        assert b"".join(chunks) == data[7:]
        assert (
            await collect(store, "big", 5 * MiB - 3, 5 * MiB + 3) == data[5 * MiB - 3 : 5 * MiB + 3]
        )

    run(FileStore(tmp_path), scenario)


def test_an_empty_last_part_is_left_out_of_the_manifest(tmp_path: Path, small_parts: None) -> None:
    pieces = [os.urandom(1200), os.urandom(1300), b""]

    async def scenario(store: FileStore) -> None:
        etag, _ = await upload(store, "e", pieces)
        manifest = manifest_of(store, "e")
        assert manifest.parts == (("00001", 1200), ("00002", 1300))
        assert etag.endswith("-2")
        assert sorted(os.listdir(store.root / "parts" / manifest.parts_id)) == ["00001", "00002"]
        chunks = [chunk async for chunk in store.read("e")]
        assert all(chunks) and b"".join(chunks) == b"".join(pieces)

    run(FileStore(tmp_path), scenario)


def test_a_single_part_becomes_an_ordinary_file(tmp_path: Path) -> None:
    async def scenario(store: FileStore) -> None:
        etag, [part] = await upload(store, "one", [b"just one part"])
        path = object_file(store, "one")
        assert path.read_bytes() == b"just one part"
        assert os.stat(path).st_ino == int(part.etag.split("-")[0], 16)  # linked, not copied
        info = await store.head("one")
        assert info is not None and (info.size, info.etag) == (13, etag)
        assert parts_dirs(store) == []

        etag, _ = await upload(store, "none", [b""])
        assert object_file(store, "none").read_bytes() == b""
        assert await store.get("none") == b""
        assert parts_dirs(store) == []

    run(FileStore(tmp_path), scenario)


def test_bytes_that_look_like_a_manifest_read_back_as_bytes(tmp_path: Path) -> None:
    forged = Manifest(parts_id="f" * 32, parts=(("00001", 5),), etag="x-1").encode()

    async def scenario(store: FileStore) -> None:
        etag = await store.put("forged/put", forged)
        assert await store.get("forged/put") == forged
        assert await collect(store, "forged/put", 3) == forged[3:]
        info = await store.head("forged/put")
        assert info is not None and (info.size, info.etag) == (len(forged), etag)
        assert "f" * 32 not in parts_dirs(store)

        await upload(store, "forged/multipart", [forged])
        assert await store.get("forged/multipart") == forged
        assert len(parts_dirs(store)) == 2

        await store.delete("forged/put")
        await store.delete("forged/multipart")
        assert parts_dirs(store) == []

    run(FileStore(tmp_path), scenario)


def test_delete_removes_the_parts(tmp_path: Path, small_parts: None) -> None:
    async def scenario(store: FileStore) -> None:
        await upload(store, "d/obj", [os.urandom(1100), os.urandom(50)])
        assert len(parts_dirs(store)) == 1
        await store.delete("d/obj")
        assert parts_dirs(store) == []
        assert await store.head("d/obj") is None
        assert await store.get("d/obj") is None
        with pytest.raises(KeyError):
            await collect(store, "d/obj")
        assert not (store.root / "objects" / "d").exists()
        assert os.listdir(store.root / "tmp") == []

    run(FileStore(tmp_path), scenario)


def test_overwriting_a_manifest_object_removes_its_old_parts(
    tmp_path: Path, small_parts: None
) -> None:
    async def scenario(store: FileStore) -> None:
        await upload(store, "o", [os.urandom(1100), os.urandom(50)])
        first = manifest_of(store, "o").parts_id
        await upload(store, "o", [os.urandom(1200), os.urandom(60)])
        second = manifest_of(store, "o").parts_id
        assert parts_dirs(store) == [second] != [first]
        assert (await store.head("o")).size == 1260  # type: ignore[union-attr]

        await store.put("o", b"plain again")
        assert parts_dirs(store) == []
        assert object_file(store, "o").read_bytes() == b"plain again"
        assert (await store.head("o")).size == 11  # type: ignore[union-attr]

    run(FileStore(tmp_path), scenario)


@pytest.mark.parametrize("count", [1, 2])
def test_a_failed_completion_leaves_the_upload_whole(
    tmp_path: Path, small_parts: None, count: int
) -> None:
    async def scenario(store: FileStore) -> None:
        await store.put("clash/below", b"x")
        upload_id = await store.create_multipart("clash")
        parts = [
            await store.upload_part("clash", upload_id, n, memoryview(os.urandom(1100)))
            for n in range(1, count + 1)
        ]
        with pytest.raises(StorageError, match="clashes"):
            await store.complete_multipart("clash", upload_id, parts)
        with pytest.raises(StorageError, match="InvalidPart"):
            await store.complete_multipart("clash", upload_id, [parts[0], Part(9, 1100, "nope")])
        tiny = await store.upload_part("clash", upload_id, 7, memoryview(b"tiny"))
        last = await store.upload_part("clash", upload_id, 8, memoryview(b"last"))
        with pytest.raises(StorageError, match="EntityTooSmall"):
            await store.complete_multipart("clash", upload_id, [parts[0], tiny, last])
        assert parts_dirs(store) == []
        listed = await store.list_parts("clash", upload_id)
        assert listed[:count] == parts  # same files, same ETags: nothing was touched

        await store.delete("clash/below")
        etag = await store.complete_multipart("clash", upload_id, parts)
        info = await store.head("clash")
        assert info is not None and (info.size, info.etag) == (1100 * count, etag)

    run(FileStore(tmp_path), scenario)


def test_crash_leftovers_are_ignored_and_swept(tmp_path: Path, small_parts: None) -> None:
    pieces = [os.urandom(1100), os.urandom(70)]

    async def scenario(store: FileStore) -> None:
        await upload(store, "keep", pieces)
        live = manifest_of(store, "keep").parts_id
        # What a crash between steps leaves: a manifest written to tmp/ but never
        # renamed into place, and a parts dir that no manifest names.
        orphan = "0" * 32
        shutil.copytree(store.root / "parts" / live, store.root / "parts" / orphan)
        leftover = Manifest(parts_id=orphan, parts=(("00001", 1100),), etag=f"{orphan}-1")
        (store.root / "tmp" / ("1" * 32)).write_bytes(leftover.encode())

        assert [info.key for info in await store.list("")] == ["keep"]
        assert await store.get("keep") == b"".join(pieces)

        assert await store.housekeep(older_than=60) == 0  # too young to judge
        assert sorted(parts_dirs(store)) == sorted([live, orphan])
        an_hour_ago = time.time() - 3600
        for parts_id in (live, orphan):
            os.utime(store.root / "parts" / parts_id, (an_hour_ago, an_hour_ago))
        assert await store.housekeep(older_than=60) == 1
        assert parts_dirs(store) == [live]
        assert await store.get("keep") == b"".join(pieces)

    run(FileStore(tmp_path), scenario)


def test_a_read_outlived_by_its_parts_fails_loudly(tmp_path: Path) -> None:
    pieces = [os.urandom(5 * MiB), os.urandom(100)]

    async def scenario(store: FileStore) -> None:
        await upload(store, "gone", pieces)
        reader = store.read("gone")
        first = await reader.__anext__()
        await store.delete("gone")
        rest = bytearray()
        with pytest.raises(StorageError, match="deleted or replaced"):
            async for chunk in reader:
                rest += chunk
        # The open first part was read to its end; the second one was gone.
        assert first + rest == pieces[0]

    run(FileStore(tmp_path), scenario)


def test_a_broken_manifest_is_a_storage_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    (store.root / "objects" / "broken").write_bytes(MAGIC + b"{not json")

    async def scenario(store: FileStore) -> None:
        with pytest.raises(StorageError, match="broken manifest"):
            await store.head("broken")
        with pytest.raises(StorageError, match="broken manifest"):
            await collect(store, "broken")
        await store.put("broken", b"fixed")  # an overwrite still works
        assert await store.get("broken") == b"fixed"

    run(store, scenario)


@pytest.mark.parametrize("meanwhile", ["replaced", "deleted"])
def test_a_read_starts_over_if_the_object_changes_before_its_first_part(
    tmp_path: Path, small_parts: None, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    """Between reading a manifest and opening its first part, a put or delete may win."""
    store = FileStore(tmp_path)
    real_open = aiofiles.open
    interfered: list[str] = []

    async def interfere_then_open(path: Path, mode: str) -> object:
        if meanwhile == "replaced":
            await store.put("k", b"the new bytes")
        else:
            await store.delete("k")
        return await real_open(path, mode)

    def interfering_open(path: Path, mode: str) -> object:
        if "parts" in Path(path).parts and not interfered:
            interfered.append(str(path))
            return interfere_then_open(path, mode)
        return real_open(path, mode)

    async def scenario(store: FileStore) -> None:
        await upload(store, "k", [os.urandom(1100), os.urandom(20)])
        monkeypatch.setattr(aiofiles, "open", interfering_open)
        if meanwhile == "replaced":
            assert await collect(store, "k", 4) == b"new bytes"
        else:
            with pytest.raises(KeyError):
                await collect(store, "k", 4)
        assert len(interfered) == 1
        assert parts_dirs(store) == []

    run(store, scenario)


def test_gateway_sweep_removes_orphaned_parts_dirs(tmp_path: Path) -> None:
    """`gateway sweep` on the embedded default: the file store's crash leftovers go too."""
    import subprocess
    import sys

    data = tmp_path / "data"
    pieces = [os.urandom(5 * MiB), os.urandom(70)]

    async def scenario(store: FileStore) -> str:
        await upload(store, "keep", pieces)
        return manifest_of(store, "keep").parts_id

    live = run(FileStore(data / "store"), scenario)
    parts = data / "store" / "parts"
    orphan = "0" * 32
    shutil.copytree(parts / live, parts / orphan)
    an_hour_ago = time.time() - 7200
    for parts_id in (live, orphan):
        os.utime(parts / parts_id, (an_hour_ago, an_hour_ago))
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data), "GATEWAY_LOG_LEVEL": "warning"}
    env.pop("GATEWAY_STORAGE", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "sweep"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "store leftovers removed: 1" in done.stdout.splitlines()
    assert sorted(p.name for p in parts.iterdir()) == [live]

    async def read_back(store: FileStore) -> bytes | None:
        return await store.get("keep")

    assert run(FileStore(data / "store"), read_back) == b"".join(pieces)
