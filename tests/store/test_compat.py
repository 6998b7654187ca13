"""The store contract on two more S3 implementations: OpenStack Swift (s3api) and Ceph RGW.

The contract tests are imported from test_contract, not copied: pytest
collects them again in this module, where ``new_store`` and ``seaweed`` are
overridden to mean "the S3 server under test" (parametrized over Swift and
RGW). So every store test written against SeaweedFS also runs here. Each
server boots once per session (tests/support/compat.py).

On top: RGW's empty ETag in CompleteMultipartUpload's response, and the
upload engine end to end (two requests, a restart in between) over each.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from gateway.signing import UploadLink, new_link_id
from gateway.store import ObjectStore
from gateway.store.s3 import S3Store
from gateway.uploads import records
from gateway.uploads.budget import BufferBudget
from gateway.uploads.engine import UploadEngine, WriteRequest
from gateway.uploads.records import FileRecord
from tests.store.conftest import StoreFactory, run
from tests.store.test_compose import (  # noqa: F401 - collected here again, on these servers
    test_compose_joins_sources_of_any_size,
    test_compose_of_short_and_empty_sources,
    test_compose_replaces_an_existing_object,
    test_compose_with_a_missing_source_writes_nothing,
)
from tests.store.test_contract import (  # noqa: F401 - collected here again, on these servers
    test_abort,
    test_identical_re_upload_lists_one_part,
    test_is_an_object_store,
    test_large_multipart_with_concurrent_parts,
    test_list_multipart_under_prefix,
    test_list_with_prefix,
    test_multipart_round_trip,
    test_open_store_s3_uses_boto3_environment,
    test_put_get_head_delete,
    test_put_if_absent,
    test_re_uploaded_part_completes_with_the_new_version,
    test_read_ranges,
    test_read_stops_early_and_releases,
    test_s3_missing_bucket_is_a_storage_error,
    test_s3_pages_through_long_listings,
    test_s3_prefix_keeps_keys_apart,
    test_s3_writes_carry_the_configured_checksum,
    test_small_parts_are_refused_on_complete,
)
from tests.support.compat import CompatServer

pytestmark = pytest.mark.compat

MiB = 1024 * 1024


@pytest.fixture(params=["swift", "rgw"])
def compat_server(request: pytest.FixtureRequest) -> CompatServer:
    server: CompatServer = request.getfixturevalue(f"{request.param}_s3")
    return server


@pytest.fixture
def seaweed(compat_server: CompatServer) -> CompatServer:
    """The S3-only contract tests name their server ``seaweed``; here it is Swift or RGW."""
    return compat_server


@pytest.fixture
def new_store(compat_server: CompatServer) -> StoreFactory:
    """S3 stores on a fresh bucket of the server under test."""
    bucket = compat_server.make_bucket()

    def make_s3(prefix: str = "") -> ObjectStore:
        return S3Store(bucket, prefix, client=compat_server.client())

    return make_s3


def test_complete_returns_the_etag_head_reports(compat_server: CompatServer) -> None:
    """RGW answers CompleteMultipartUpload with an empty ETag; S3Store asks HEAD instead."""
    client = compat_server.client()
    seen: list[object] = []
    client.meta.events.register(
        "after-call.s3.CompleteMultipartUpload",
        lambda parsed, **_: seen.append(parsed.get("ETag")),
    )
    data = memoryview(os.urandom(5 * MiB + 17))

    async def scenario(store: ObjectStore) -> None:
        upload_id = await store.create_multipart("etag/file")
        parts = [
            await store.upload_part("etag/file", upload_id, 1, data[: 5 * MiB]),
            await store.upload_part("etag/file", upload_id, 2, data[5 * MiB :]),
        ]
        etag = await store.complete_multipart("etag/file", upload_id, parts)
        info = await store.head("etag/file")
        assert info is not None and info.size == len(data)
        assert etag and etag == info.etag
        assert etag.endswith("-2")  # S3's multipart ETag: md5 of the part md5s, dash, count

    run(S3Store(compat_server.make_bucket(), client=client), scenario)
    assert len(seen) == 1
    if compat_server.name == "rgw":
        assert not seen[0], "RGW now sends an ETag on complete; the HEAD fallback is unused"


async def _body(data: memoryview, chunk: int = 1024 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield bytes(data[start : start + chunk])


def test_engine_round_trip_with_a_resume(compat_server: CompatServer) -> None:
    """40 MiB through UploadEngine in two requests; the second on a fresh engine."""
    data = memoryview(os.urandom(40 * MiB))
    cut = 17 * MiB + 12345  # mid-part: full parts plus a tail object
    bucket = compat_server.make_bucket()
    finished: list[FileRecord] = []
    link = UploadLink(
        ticket="4242", expires_at=int(time.time()) + 3600, max_size=1 << 40,
        link_id=new_link_id(),
    )  # fmt: skip

    def engine() -> UploadEngine:
        async def on_finished(file: FileRecord) -> None:
            finished.append(file)

        return UploadEngine(
            S3Store(bucket, client=compat_server.client()),
            BufferBudget(40 * MiB),
            attachment_max=1 * MiB,
            on_finished=on_finished,
        )

    async def scenario() -> None:
        first, second = engine(), engine()
        try:
            record = await first.create(
                link, filename="trace.bin", length=len(data), protocol="put"
            )
            progress = await first.write(record, WriteRequest(0, _body(data[:cut])))
            assert progress.file is None and progress.offset == cut

            again = await second.load(record.id)  # a restart: nothing in memory
            assert await second.offset(again) == cut
            progress = await second.write(
                again, WriteRequest(cut, _body(data[cut:]), expect=len(data) - cut)
            )
            assert progress.file is not None
            assert progress.file.size == len(data)
            assert progress.file.sha256 == hashlib.sha256(data).hexdigest()

            digest = hashlib.sha256()
            async for chunk in second.store.read(records.data_key(record.id)):
                digest.update(chunk)
            assert digest.hexdigest() == progress.file.sha256
            info = await second.store.head(records.data_key(record.id))
            assert info is not None and info.etag == progress.file.etag
            assert await second.store.list_multipart("") == []
        finally:
            await first.store.close()
            await second.store.close()

    asyncio.run(scenario())
    assert [f.size for f in finished] == [len(data)]
