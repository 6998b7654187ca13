"""Keys and upload ids that could escape the file store's root are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.store import StorageError
from gateway.store.file import FileStore
from gateway.store.keys import check_key, check_prefix

BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/..",
    "..",
    ".",
    "a/./b",
    "a//b",
    "a/",
    "a\\..\\b",
    "a\x00b",
]
GOOD_KEYS = ["a", "a/b", "uploads/t-1/0001.part", "..a/b..", "a/.hidden", "名前/ファイル.txt"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a/b/", "a/.", "uploads/t-"])
def test_good_prefixes_pass(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/a", "..", "../", "a/../b", "a//", "a\\", "a\x00"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        check_prefix(prefix)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_file_store_refuses_bad_keys_everywhere(tmp_path: Path, key: str) -> None:
    store = FileStore(tmp_path / "root" / "store")

    async def scenario() -> None:
        with pytest.raises(ValueError):
            await store.put(key, b"x")
        with pytest.raises(ValueError):
            await store.put(key, b"x", if_absent=True)
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.head(key)
        with pytest.raises(ValueError):
            await store.delete(key)
        with pytest.raises(ValueError):
            async for _ in store.read(key):
                pass
        with pytest.raises(ValueError):
            await store.create_multipart(key)
        upload_id = await store.create_multipart("good")
        with pytest.raises(ValueError):
            await store.upload_part(key, upload_id, 1, memoryview(b"x"))
        with pytest.raises(ValueError):
            await store.list_parts(key, upload_id)
        with pytest.raises(ValueError):
            await store.complete_multipart(key, upload_id, [])

    asyncio.run(scenario())
    written = [p for p in (tmp_path / "root").rglob("*") if p.is_file()]
    assert all(p.is_relative_to(tmp_path / "root" / "store") for p in written)
    assert not (tmp_path / "root" / "outside").exists()
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("upload_id", ["../../objects", "..", "", "ABC", "0" * 31 + "/", "a" * 33])
def test_file_store_treats_odd_upload_ids_as_unknown(tmp_path: Path, upload_id: str) -> None:
    store = FileStore(tmp_path / "store")

    async def scenario() -> None:
        with pytest.raises(KeyError):
            await store.list_parts("k", upload_id)
        with pytest.raises(KeyError):
            await store.upload_part("k", upload_id, 1, memoryview(b"x"))
        with pytest.raises(KeyError):
            await store.complete_multipart("k", upload_id, [])
        await store.abort_multipart("k", upload_id)  # unknown: not an error

    asyncio.run(scenario())
    assert (tmp_path / "store" / "objects").is_dir()
    assert list((tmp_path / "store" / "objects").iterdir()) == []


def test_file_store_upload_id_is_bound_to_its_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")

    async def scenario() -> None:
        upload_id = await store.create_multipart("one")
        with pytest.raises(KeyError):
            await store.upload_part("two", upload_id, 1, memoryview(b"x"))
        with pytest.raises(KeyError):
            await store.list_parts("two", upload_id)
        await store.abort_multipart("two", upload_id)  # someone else's: left alone
        assert await store.list_parts("one", upload_id) == []

    asyncio.run(scenario())


def test_file_store_object_and_prefix_cannot_share_a_name(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")

    async def scenario() -> None:
        await store.put("a/b", b"x")
        with pytest.raises(StorageError, match="clashes"):
            await store.put("a", b"y")
        with pytest.raises(StorageError, match="clashes"):
            await store.put("a", b"y", if_absent=True)
        assert await store.get("a/b") == b"x"
        assert await store.head("a") is None
        await store.put("c", b"z")
        with pytest.raises(StorageError, match="clashes"):
            await store.put("c/d", b"w")
        with pytest.raises(StorageError, match="clashes"):
            await store.put("c/d/e", b"w", if_absent=True)
        assert await store.get("c") == b"z"
        assert await store.get("c/d") is None

    asyncio.run(scenario())


@pytest.mark.parametrize("number", [0, -1, 10001])
def test_file_store_refuses_bad_part_numbers(tmp_path: Path, number: int) -> None:
    store = FileStore(tmp_path / "store")

    async def scenario() -> None:
        upload_id = await store.create_multipart("k")
        with pytest.raises(ValueError):
            await store.upload_part("k", upload_id, number, memoryview(b"x"))

    asyncio.run(scenario())
