"""The ObjectStore contract, run against the file store and a real S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from gateway.settings import Settings
from gateway.store import (
    ObjectStore,
    Part,
    PreconditionFailed,
    StorageError,
    open_store,
)
from gateway.store.file import FileStore
from gateway.store.s3 import S3Store
from tests.store.conftest import StoreFactory, run
from tests.support.seaweed import SeaweedServer

MiB = 1024 * 1024


async def collect(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


def test_is_an_object_store(new_store: StoreFactory) -> None:
    assert isinstance(new_store(), ObjectStore)


def test_put_get_head_delete(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        etag = await store.put("t/1/record.json", b'{"a": 1}', content_type="application/json")
        assert etag
        assert await store.get("t/1/record.json") == b'{"a": 1}'
        info = await store.head("t/1/record.json")
        assert info is not None
        assert (info.key, info.size, info.etag) == ("t/1/record.json", 8, etag)
        assert abs(info.last_modified - time.time()) < 300

        etag2 = await store.put("t/1/record.json", b'{"a": 2}')
        assert etag2 != etag
        assert await store.get("t/1/record.json") == b'{"a": 2}'

        assert await store.get("t/1/missing") is None
        assert await store.head("t/1/missing") is None
        assert await store.head("t/1") is None  # a prefix is not an object

        await store.delete("t/1/record.json")
        await store.delete("t/1/record.json")  # absent: not an error
        assert await store.get("t/1/record.json") is None
        assert await store.list("t/") == []

        assert await store.put("empty", b"")
        assert await store.get("empty") == b""

    run(new_store(), scenario)


def test_list_with_prefix(new_store: StoreFactory) -> None:
    keys = ["x/1", "x/2", "x/sub/3", "xy/4", "y/5"]

    async def scenario(store: ObjectStore) -> None:
        for index, key in enumerate(keys):
            await store.put(key, b"z" * index)
        listed = await store.list("x/")
        assert [info.key for info in listed] == ["x/1", "x/2", "x/sub/3"]
        assert [info.size for info in listed] == [0, 1, 2]
        assert [info.key for info in await store.list("x")] == ["x/1", "x/2", "x/sub/3", "xy/4"]
        assert [info.key for info in await store.list("")] == keys
        assert [info.key for info in await store.list("x/s")] == ["x/sub/3"]
        assert await store.list("nothing/") == []
        head = await store.head("x/2")
        assert head is not None and head.etag == listed[1].etag

    run(new_store(), scenario)


def test_put_if_absent(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("locks/a", b"first", if_absent=True)
        with pytest.raises(PreconditionFailed):
            await store.put("locks/a", b"second", if_absent=True)
        assert await store.get("locks/a") == b"first"

        await store.delete("locks/a")
        await store.put("locks/a", b"third", if_absent=True)
        assert await store.get("locks/a") == b"third"

        async def attempt(n: int) -> bool:
            try:
                await store.put("locks/race", str(n).encode(), if_absent=True)
            except PreconditionFailed:
                return False
            return True

        results = await asyncio.gather(*(attempt(n) for n in range(6)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert await store.get("locks/race") == str(winner).encode()

    run(new_store(), scenario)


def test_read_ranges(new_store: StoreFactory) -> None:
    data = os.urandom(3 * MiB + 123)

    async def scenario(store: ObjectStore) -> None:
        await store.put("blob", data)
        assert await collect(store, "blob") == data
        chunks = [chunk async for chunk in store.read("blob")]
        assert max(len(chunk) for chunk in chunks) <= MiB
        assert await collect(store, "blob", 100) == data[100:]
        assert await collect(store, "blob", 0, 10) == data[:10]
        assert await collect(store, "blob", MiB - 5, 2 * MiB + 7) == data[MiB - 5 : 2 * MiB + 7]
        assert await collect(store, "blob", len(data) - 1) == data[-1:]
        assert await collect(store, "blob", 50, 50) == b""
        assert await collect(store, "blob", len(data)) == b""  # empty tail
        assert await collect(store, "blob", len(data) + 10) == b""
        assert await collect(store, "blob", 10, len(data) + 100) == data[10:]
        with pytest.raises(KeyError):
            await collect(store, "no-such-blob")
        with pytest.raises(ValueError):
            await collect(store, "blob", 10, 5)

        await store.put("zero", b"")
        assert await collect(store, "zero") == b""
        assert await collect(store, "zero", 0, 10) == b""

    run(new_store(), scenario)


def test_read_stops_early_and_releases(new_store: StoreFactory) -> None:
    data = os.urandom(4 * MiB)

    async def scenario(store: ObjectStore) -> None:
        await store.put("blob", data)
        for _ in range(20):  # more than a pool could hold if bodies leaked
            reader = store.read("blob")
            first = await reader.__anext__()
            assert first == data[: len(first)]
            await reader.aclose()  # type: ignore[attr-defined]
        assert await collect(store, "blob", 5, 9) == data[5:9]

    run(new_store(), scenario)


def test_multipart_round_trip(new_store: StoreFactory) -> None:
    buffer = bytearray(os.urandom(10 * MiB + 3))
    view = memoryview(buffer)
    # Slices of one buffer, at non-zero offsets, as the intake pipeline sends them.
    pieces = {1: view[1 : 5 * MiB + 1], 2: view[5 * MiB + 1 : 10 * MiB + 1], 3: view[-1:]}
    expected = bytes(view[1 : 10 * MiB + 1]) + bytes(view[-1:])

    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("up/big.bin", content_type="application/zip")
        assert upload_id
        assert await store.list_parts("up/big.bin", upload_id) == []
        uploaded: dict[int, Part] = {}
        for number in (3, 1, 2):  # any order
            part = await store.upload_part("up/big.bin", upload_id, number, pieces[number])
            assert (part.number, part.size) == (number, len(pieces[number]))
            uploaded[number] = part

        listed = await store.list_parts("up/big.bin", upload_id)
        assert [(p.number, p.size) for p in listed] == [(1, 5 * MiB), (2, 5 * MiB), (3, 1)]
        assert [p.etag for p in listed] == [uploaded[n].etag for n in (1, 2, 3)]
        assert [(m.key, m.upload_id) for m in await store.list_multipart("up/")] == [
            ("up/big.bin", upload_id)
        ]

        etag = await store.complete_multipart("up/big.bin", upload_id, listed)
        info = await store.head("up/big.bin")
        assert info is not None
        assert info.etag == etag
        assert info.size == len(expected)
        assert hashlib.sha256(await collect(store, "up/big.bin")).digest() == (
            hashlib.sha256(expected).digest()
        )
        assert (
            await collect(store, "up/big.bin", 5 * MiB - 2, 5 * MiB + 2)
            == (expected[5 * MiB - 2 : 5 * MiB + 2])
        )
        assert await store.list_multipart("up/") == []
        with pytest.raises(KeyError):
            await store.list_parts("up/big.bin", upload_id)

    run(new_store(), scenario)


def test_identical_re_upload_lists_one_part(new_store: StoreFactory) -> None:
    """A retried part upload (same bytes) must not count twice toward the offset."""

    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("re/same")
        first = await store.upload_part("re/same", upload_id, 1, memoryview(b"a" * 10))
        second = await store.upload_part("re/same", upload_id, 1, memoryview(b"a" * 10))
        listed = await store.list_parts("re/same", upload_id)
        assert [(p.number, p.size) for p in listed] == [(1, 10)]
        assert listed[0].etag in (first.etag, second.etag)
        await store.complete_multipart("re/same", upload_id, listed)
        assert await store.get("re/same") == b"a" * 10

    run(new_store(), scenario)


def test_re_uploaded_part_completes_with_the_new_version(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("re/x")
        old = await store.upload_part("re/x", upload_id, 1, memoryview(b"a" * 10))
        new = await store.upload_part("re/x", upload_id, 1, memoryview(b"b" * 7))
        assert old.etag != new.etag
        listed = await store.list_parts("re/x", upload_id)
        if listed != [new]:
            # SeaweedFS lists every version of a re-uploaded part; within one second
            # the current one cannot be told apart, and the part is reported as not
            # stored (size -1) so that an upload resumes before it.
            assert store.name == "s3"
            assert listed == [Part(number=1, size=-1, etag="")]
        await store.complete_multipart("re/x", upload_id, [new])
        assert await store.get("re/x") == b"b" * 7

    run(new_store(), scenario)


def test_file_store_replaces_a_re_uploaded_part(tmp_path: Path) -> None:
    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("re/x")
        old = await store.upload_part("re/x", upload_id, 1, memoryview(b"a" * 10))
        new = await store.upload_part("re/x", upload_id, 1, memoryview(b"b" * 7))
        assert await store.list_parts("re/x", upload_id) == [new]
        with pytest.raises(StorageError, match="InvalidPart"):
            await store.complete_multipart("re/x", upload_id, [old])

    run(FileStore(tmp_path), scenario)


def test_abort(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("ab/file")
        await store.upload_part("ab/file", upload_id, 1, memoryview(b"data"))
        await store.abort_multipart("ab/file", upload_id)
        with pytest.raises(KeyError):
            await store.list_parts("ab/file", upload_id)
        assert all(m.upload_id != upload_id for m in await store.list_multipart(""))
        await store.abort_multipart("ab/file", upload_id)  # already gone: not an error
        with pytest.raises(KeyError):
            await store.upload_part("ab/file", upload_id, 2, memoryview(b"late"))
        with pytest.raises(KeyError):
            await store.complete_multipart("ab/file", upload_id, [Part(1, 4, "x")])
        assert await store.head("ab/file") is None

    run(new_store(), scenario)


def test_small_parts_are_refused_on_complete(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("small/x")
        parts = [
            await store.upload_part("small/x", upload_id, n, memoryview(b"tiny")) for n in (1, 2)
        ]
        with pytest.raises(StorageError) as caught:
            await store.complete_multipart("small/x", upload_id, parts)
        assert "EntityTooSmall" in str(caught.value)
        assert await store.head("small/x") is None
        await store.abort_multipart("small/x", upload_id)

    run(new_store(), scenario)


def test_list_multipart_under_prefix(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> None:
        before = time.time()
        a = await store.create_multipart("uploads/t1/a")
        b = await store.create_multipart("uploads/t2/b")
        c = await store.create_multipart("other/c")
        listed = await store.list_multipart("uploads/")
        assert [(m.key, m.upload_id) for m in listed] == [
            ("uploads/t1/a", a),
            ("uploads/t2/b", b),
        ]
        assert all(abs(m.initiated - before) < 300 for m in listed)
        assert [m.upload_id for m in await store.list_multipart("other/")] == [c]
        assert {m.upload_id for m in await store.list_multipart("")} >= {a, b, c}
        for key, upload_id in (("uploads/t1/a", a), ("uploads/t2/b", b), ("other/c", c)):
            await store.abort_multipart(key, upload_id)
        assert await store.list_multipart("") == []

    run(new_store(), scenario)


def test_large_multipart_with_concurrent_parts(new_store: StoreFactory) -> None:
    part_size = 8 * MiB
    data = memoryview(os.urandom(64 * MiB))
    limit = asyncio.Semaphore(4)

    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("big/64m")

        async def send(number: int) -> Part:
            async with limit:
                offset = (number - 1) * part_size
                return await store.upload_part(
                    "big/64m", upload_id, number, data[offset : offset + part_size]
                )

        parts = await asyncio.gather(*(send(n) for n in range(1, 9)))
        await store.complete_multipart("big/64m", upload_id, list(parts))

        digest = hashlib.sha256()
        async for chunk in store.read("big/64m"):
            digest.update(chunk)
        assert digest.digest() == hashlib.sha256(data).digest()

    run(new_store(), scenario)


# -- S3 only -----------------------------------------------------------------------


def test_s3_prefix_keeps_keys_apart(seaweed: SeaweedServer, s3_bucket: str) -> None:
    async def scenario(_: ObjectStore) -> None:
        a = S3Store(s3_bucket, "tenant-a", client=seaweed.client())
        b = S3Store(s3_bucket, "tenant-b/", client=seaweed.client())
        await a.put("k", b"from a")
        await b.put("k", b"from b")
        assert await a.get("k") == b"from a"
        assert await b.get("k") == b"from b"
        assert [i.key for i in await a.list("")] == ["k"]
        upload_id = await a.create_multipart("m")
        assert [(m.key, m.upload_id) for m in await a.list_multipart("")] == [("m", upload_id)]
        assert await b.list_multipart("") == []
        await a.delete("k")
        assert await b.get("k") == b"from b"
        await a.abort_multipart("m", upload_id)
        await a.close()
        await b.close()

    run(S3Store(s3_bucket, client=seaweed.client()), scenario)
    raw = seaweed.client()
    keys = [item["Key"] for item in raw.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    raw.close()
    assert keys == ["tenant-b/k"]


def test_s3_pages_through_long_listings(seaweed: SeaweedServer, s3_bucket: str) -> None:
    store = S3Store(s3_bucket, "paged", client=seaweed.client())
    store.page_size = 2

    async def scenario(s: ObjectStore) -> None:
        keys = [f"obj/{n:02d}" for n in range(7)]
        for key in keys:
            await s.put(key, b"x")
        assert [i.key for i in await s.list("obj/")] == keys
        upload_id = await s.create_multipart("parts")
        for number in range(1, 8):
            await s.upload_part("parts", upload_id, number, memoryview(bytes([number])))
        assert [p.number for p in await s.list_parts("parts", upload_id)] == list(range(1, 8))
        ids = [await s.create_multipart(f"mp/{n}") for n in range(5)]
        assert [m.upload_id for m in await s.list_multipart("mp/")] == ids
        for n, upload_id in enumerate(ids):
            await s.abort_multipart(f"mp/{n}", upload_id)

    run(store, scenario)


def test_s3_empty_etag_on_complete_falls_back_to_head(
    seaweed: SeaweedServer, s3_bucket: str
) -> None:
    """Ceph RGW answers CompleteMultipartUpload with an empty ETag."""
    client = seaweed.client()
    blanked: list[object] = []

    def blank_etag(parsed: dict[str, object], **_: object) -> None:
        blanked.append(parsed.pop("ETag", None))
        parsed["ETag"] = ""

    client.meta.events.register("after-call.s3.CompleteMultipartUpload", blank_etag)

    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("rgw")
        part = await store.upload_part("rgw", upload_id, 1, memoryview(b"abc"))
        etag = await store.complete_multipart("rgw", upload_id, [part])
        info = await store.head("rgw")
        assert info is not None and etag == info.etag and etag.endswith("-1")

    run(S3Store(s3_bucket, client=client), scenario)
    assert len(blanked) == 1 and blanked[0]  # the server did send one; we hid it


def test_s3_missing_bucket_is_a_storage_error(seaweed: SeaweedServer) -> None:
    async def scenario(store: ObjectStore) -> None:
        with pytest.raises(StorageError) as caught:
            await store.ping()
        assert seaweed.secret_key not in str(caught.value)
        with pytest.raises(StorageError, match="NoSuchBucket"):
            await store.get("x")  # not None: a missing bucket is not a missing key

    run(S3Store(f"missing-{uuid.uuid4().hex[:12]}", client=seaweed.client()), scenario)


def test_s3_unreachable_is_a_storage_error(seaweed: SeaweedServer) -> None:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2),
    )

    async def scenario(store: ObjectStore) -> None:
        with pytest.raises(StorageError) as caught:
            await store.head("anything")
        assert seaweed.secret_key not in str(caught.value)
        assert seaweed.access_key not in str(caught.value)

    run(S3Store("bucket", client=client), scenario)


def test_s3_server_side_encryption(seaweed: SeaweedServer, s3_bucket: str) -> None:
    async def scenario(store: ObjectStore) -> None:
        await store.put("enc/small", b"secret")
        upload_id = await store.create_multipart("enc/big")
        part = await store.upload_part("enc/big", upload_id, 1, memoryview(b"payload"))
        await store.complete_multipart("enc/big", upload_id, [part])
        assert await store.get("enc/small") == b"secret"
        assert await store.get("enc/big") == b"payload"

    run(S3Store(s3_bucket, sse="AES256", client=seaweed.client()), scenario)
    raw = seaweed.client()
    assert raw.head_object(Bucket=s3_bucket, Key="enc/small").get("ServerSideEncryption") == (
        "AES256"
    )
    raw.close()


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC32"])
def test_s3_writes_carry_the_configured_checksum(
    seaweed: SeaweedServer, s3_bucket: str, algorithm: str
) -> None:
    """Every write names its checksum, whose value matches the bytes, and the server takes it."""
    import base64
    import zlib

    import awscrt.checksums

    client = seaweed.client()
    sent: list[tuple[str, dict[str, str]]] = []

    def capture(request: object, **kwargs: object) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else v
            for k, v in getattr(request, "headers").items()  # noqa: B009
        }
        sent.append((str(kwargs["event_name"]), headers))

    client.meta.events.register("before-send.s3.PutObject", capture)
    client.meta.events.register("before-send.s3.UploadPart", capture)
    data = os.urandom(6 * MiB)
    compute = awscrt.checksums.crc32c if algorithm == "CRC32C" else zlib.crc32
    expected = base64.b64encode(compute(data).to_bytes(4, "big")).decode()

    async def scenario(store: ObjectStore) -> None:
        await store.put("sum/small", data)
        upload_id = await store.create_multipart("sum/big")
        part = await store.upload_part("sum/big", upload_id, 1, memoryview(data))
        await store.complete_multipart("sum/big", upload_id, [part])
        assert await store.get("sum/small") == data
        assert await collect(store, "sum/big") == data

    run(S3Store(s3_bucket, checksum=algorithm, client=client), scenario)
    header = f"x-amz-checksum-{algorithm.lower()}"
    assert [event.split(".")[-1] for event, _ in sent] == ["PutObject", "UploadPart"]
    for _, headers in sent:
        assert headers.get(header) == expected
        other = "x-amz-checksum-crc32" if algorithm == "CRC32C" else "x-amz-checksum-crc32c"
        assert other not in headers


def test_s3_checksum_is_validated(seaweed: SeaweedServer, s3_bucket: str) -> None:
    with pytest.raises(ValueError, match="CRC32C"):
        S3Store(s3_bucket, checksum="MD5", client=seaweed.client())


# -- open_store ------------------------------------------------------------------------


def test_open_store_file(tmp_path: Path) -> None:
    store = open_store(Settings(storage="file", data_dir=Path(tmp_path)))
    assert isinstance(store, FileStore)
    assert store.root == Path(tmp_path) / "store"
    run(store, lambda s: s.ping())


def test_open_store_s3_uses_boto3_environment(
    seaweed: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(Settings(storage="s3", s3_bucket=s3_bucket, s3_prefix="gw/"))
    assert isinstance(store, S3Store)

    async def scenario(s: ObjectStore) -> bytes | None:
        await s.ping()
        await s.put("hello", b"world")
        return await s.get("hello")

    assert run(store, scenario) == b"world"
    raw = seaweed.client()
    assert raw.get_object(Bucket=s3_bucket, Key="gw/hello")["Body"].read() == b"world"
    raw.close()
