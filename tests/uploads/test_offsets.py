"""What is stored, and the offset it makes: the pure run of parts, and the store's answer
on the file store and on SeaweedFS (written directly, without the engine's writer)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.errors import Code, GatewayError
from gateway.store.base import Part
from gateway.uploads import offsets, records
from gateway.uploads.offsets import committed_run
from gateway.uploads.partsize import PartPlan
from gateway.uploads.records import UploadRecord
from tests.uploads.conftest import StoreFactory

MiB = 1024 * 1024
PLAN = PartPlan(base=5 * MiB, cap=5 * MiB, fixed=True)


def _part(number: int, size: int = 5 * MiB) -> Part:
    return Part(number=number, etag=f'"{number}"', size=size)


def test_only_the_committed_contiguous_parts_of_the_planned_size_count() -> None:
    listed = [_part(1), _part(2), _part(3)]
    assert committed_run(listed, 3, PLAN) == listed
    assert committed_run(listed, 2, PLAN) == listed[:2]  # part 3 was never committed
    assert committed_run([_part(1), _part(3)], 3, PLAN) == [_part(1)]  # a gap ends the run
    assert committed_run([_part(1), _part(2, 1000)], 2, PLAN) == [_part(1)]  # a short part
    assert committed_run([], 5, PLAN) == []


def _record(length: int | None = 12 * MiB) -> UploadRecord:
    now = time.time()
    return UploadRecord(
        id=records.new_id(), ticket="1", link_id="l" * 22, filename="f.bin", length=length,
        max_size=1 << 40, plan=PLAN, created_at=now, expires_at=now + 3600, protocol="put",
    )  # fmt: skip


def test_the_offset_is_the_committed_parts_plus_the_tail(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        record = _record()
        key = records.data_key(record.id)
        assert (await offsets.stored(store, record)).offset == 0
        record.multipart_id = await store.create_multipart(key)
        first = await store.upload_part(key, record.multipart_id, 1, memoryview(b"a" * (5 * MiB)))
        await store.upload_part(key, record.multipart_id, 2, memoryview(b"b" * (5 * MiB)))
        record.committed = 1  # part 2 landed but was never committed: it does not count
        await store.put(records.tail_key(record.id, 2), b"t" * 1000)
        await store.put(records.tail_key(record.id, 3), b"stale")  # not the next part's
        found = await offsets.stored(store, record)
        assert [p.number for p in found.parts] == [first.number]
        assert found.tail == b"t" * 1000
        assert found.offset == 5 * MiB + 1000
        assert found.completed is None
        await store.close()

    asyncio.run(scenario())


def test_a_finished_upload_reports_its_data_object(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        record = _record(length=4)
        await store.put(records.data_key(record.id), b"done")
        found = await offsets.stored(store, record)
        assert found.completed is not None and found.offset == 4
        await store.close()

    asyncio.run(scenario())


def test_parts_gone_without_a_data_object_is_gone(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        store = new_store()
        record = _record()
        key = records.data_key(record.id)
        record.multipart_id = await store.create_multipart(key)
        await store.abort_multipart(key, record.multipart_id)
        with pytest.raises(GatewayError) as caught:
            await offsets.stored(store, record)
        assert caught.value.code is Code.GONE
        await store.close()

    asyncio.run(scenario())


SEGMENTED = PartPlan(base=7 * MiB, cap=7 * MiB, fixed=True, sub=5 * MiB)


def test_an_open_segment_counts_its_committed_sub_parts_and_its_tail(
    new_store: StoreFactory,
) -> None:
    """Part 1 is larger than a buffer: a segment of a 5 MiB and a 2 MiB sub-part."""

    async def scenario() -> None:
        store = new_store()
        record = _record(length=12 * MiB)
        record.plan = SEGMENTED
        key = records.segment_key(record.id, 1)
        record.segment_id = await store.create_multipart(key)
        await store.upload_part(key, record.segment_id, 1, memoryview(b"a" * (5 * MiB)))
        await store.upload_part(key, record.segment_id, 2, memoryview(b"b" * (2 * MiB)))
        record.segment_committed = 1  # sub-part 2 landed but does not count yet
        await store.put(records.sub_tail_key(record.id, 1, 2), b"t" * 1000)
        await store.put(records.tail_key(record.id, 1), b"stale")  # not a segment's tail
        await store.put(records.sub_tail_key(record.id, 1, 3), b"stale")
        found = await offsets.stored(store, record)
        assert found.segment is not None and found.segment.committed == 1
        assert found.tail == b"t" * 1000
        assert found.tail_key == records.sub_tail_key(record.id, 1, 2)
        assert found.offset == 5 * MiB + 1000

        record.segment_committed = 2  # the whole part: sealing is all that is left
        found = await offsets.stored(store, record)
        assert found.offset == 7 * MiB and found.tail is None
        listed = await store.list_parts(key, record.segment_id)
        await store.complete_multipart(key, record.segment_id, listed)
        found = await offsets.stored(store, record)  # completed, not yet copied
        assert found.segment is not None and found.segment.complete
        assert found.offset == 7 * MiB

        await store.delete(key)  # gone (copied, and then deleted)
        assert (await offsets.stored(store, record)).offset == 0
        record.segment_id = await store.create_multipart(records.segment_key(record.id, 2))
        record.segment_committed = 0  # names a segment of part 2: nothing of part 1 counts
        assert (await offsets.stored(store, record)).offset == 0
        await store.close()

    asyncio.run(scenario())
