"""Parts larger than a buffer: segments of sub-parts, copied into place, on both stores.

A 10 MiB budget holds 5 MiB buffers; at most 2 parts per multipart upload
makes a 12 MiB file a part of 7 MiB and one of the remaining 5 MiB and a
bit, each a segment of a 5 MiB sub-part and a shorter one. Every offset a request can end at
is what the store holds, on any replica, and the file comes out whole.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectStore, Part, StorageError
from gateway.sweep import sweep
from gateway.uploads import records
from gateway.uploads.engine import UploadEngine, WriteRequest
from gateway.uploads.limit import size_limit
from gateway.uploads.partsize import MiB
from gateway.uploads.records import UploadRecord
from gateway.uploads.repository import Records
from tests.uploads.conftest import StoreFactory
from tests.uploads.test_engine import Harness, body, read_all, run

DATA = os.urandom(12 * MiB + 12345)
SHA = hashlib.sha256(DATA).hexdigest()
PART = 7 * MiB  # part 1; part 2 holds the other 5 MiB + 12345 bytes
SUB = 5 * MiB
LIMIT = size_limit(max_upload=1 << 40, buffer_memory=10 * MiB, max_parts=2)


def engine_of(h: Harness) -> UploadEngine:
    return h.engine(limit=LIMIT)  # type: ignore[arg-type]


async def create(engine: UploadEngine, h: Harness, length: int = len(DATA)) -> UploadRecord:
    record = await engine.create(h.link, filename="big.bin", length=length, protocol="put")
    assert (record.plan.base, record.plan.sub) == (PART, SUB)
    return record


async def leftovers(store: ObjectStore, upload_id: str) -> list[str]:
    """Anything of the upload's besides its data: objects and multipart uploads."""
    keys = [info.key for info in await store.list(f"uploads/{upload_id}/")]
    keys += [mpu.key for mpu in await store.list_multipart(f"uploads/{upload_id}/")]
    return keys


def test_the_plan_has_segments() -> None:
    everything = size_limit(max_upload=1 << 50, buffer_memory=10 * MiB)
    assert (everything.parts, everything.largest) == (10_000, 10_000 * 5 * 1024 * MiB)
    assert LIMIT.parts == 2
    assert LIMIT.largest == 2 * 2 * SUB  # two parts of two 5 MiB sub-parts


def test_one_request_writes_segments_and_leaves_nothing_behind(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        record = await create(engine, h)
        progress = await engine.write(
            record, WriteRequest(0, body(DATA), final=True, expect=len(DATA))
        )
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await read_all(engine.store, record.id) == DATA
        assert await leftovers(engine.store, record.id) == []

    run(new_store, scenario)


# Mid sub-part, a sub-part's end, mid a short last sub-part, a segment's end, in the last one.
CUTS = [3 * MiB, SUB, SUB + MiB, PART, PART + 3, PART + SUB, PART + SUB + 7]


@pytest.mark.parametrize("cut", CUTS)
def test_a_request_ending_anywhere_keeps_every_byte_for_any_replica(
    new_store: StoreFactory, cut: int
) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        record = await create(engine, h)
        assert (await engine.write(record, WriteRequest(0, body(DATA[:cut])))).offset == cut
        other = engine_of(h)  # another replica, or a restart
        assert await other.offset(await other.load(record.id)) == cut
        rest = DATA[cut:]
        progress = await other.write(record, WriteRequest(cut, body(rest), expect=len(rest)))
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await read_all(other.store, record.id) == DATA
        assert await leftovers(other.store, record.id) == []

    run(new_store, scenario)


def test_a_connection_cut_mid_segment_resumes_from_the_offset_reported(
    new_store: StoreFactory,
) -> None:
    cut = PART + 2 * MiB + 5

    async def breaking() -> AsyncIterator[bytes]:
        async for chunk in body(DATA[:cut], 1 << 20):
            yield chunk
        raise ConnectionResetError("the client went away")

    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        record = await create(engine, h)
        with pytest.raises(ConnectionResetError):
            await engine.write(record, WriteRequest(0, breaking(), expect=len(DATA)))
        other = engine_of(h)
        offset = await other.offset(await other.load(record.id))
        assert offset == cut
        progress = await other.write(record, WriteRequest(offset, body(DATA[offset:])))
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await read_all(other.store, record.id) == DATA

    run(new_store, scenario)


def test_a_failed_checksum_across_a_segment_end_counts_nothing_of_the_request(
    new_store: StoreFactory,
) -> None:
    first = SUB + MiB  # inside segment 1, past its first sub-part

    def reject(state: object) -> None:
        raise GatewayError(Code.CHECKSUM_MISMATCH)

    def accept(state: object) -> None:
        assert state.hexdigest() == hashlib.sha256(sent).hexdigest()  # type: ignore[attr-defined]

    async def scenario(h: Harness) -> None:
        nonlocal sent
        engine = engine_of(h)
        record = await create(engine, h)
        await engine.write(record, WriteRequest(0, body(DATA[:first])))
        bad = DATA[first : PART + SUB + 1]  # fills segment 1 and a sub-part of segment 2
        with pytest.raises(GatewayError) as info:
            await engine.write(
                record, WriteRequest(first, body(bad), checksum=hashlib.sha256, verify=reject)
            )
        assert info.value.code is Code.CHECKSUM_MISMATCH
        assert await engine.offset(await engine.load(record.id)) == first
        other = engine_of(h)
        assert await other.offset(await other.load(record.id)) == first
        # Segment 2, started by the rejected request, is gone.
        assert [m.key for m in await other.store.list_multipart(f"uploads/{record.id}/")] == [
            records.segment_key(record.id, 1)
        ]
        sent = DATA[first : PART + SUB + 1]
        progress = await other.write(
            record, WriteRequest(first, body(sent), checksum=hashlib.sha256, verify=accept)
        )
        assert progress.offset == PART + SUB + 1
        assert await engine_of(h).offset(await other.load(record.id)) == PART + SUB + 1
        sent = DATA[PART + SUB + 1 :]
        done = await other.write(
            record, WriteRequest(PART + SUB + 1, body(sent), checksum=hashlib.sha256, verify=accept)
        )
        assert done.file is not None and done.file.sha256 == SHA
        assert await read_all(other.store, record.id) == DATA
        assert await leftovers(other.store, record.id) == []

    sent = b""
    run(new_store, scenario)


class _FailingCopy:
    """A store whose part copies fail ``failures`` times (storage trouble), or always
    with NotImplementedError (an S3 server without UploadPartCopy)."""

    def __init__(self, inner: ObjectStore, failures: int, error: type[Exception]) -> None:
        self._inner = inner
        self.failures = failures
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> Part:
        if self.failures:
            self.failures -= 1
            raise self.error("copy refused")
        return await self._inner.copy_part(key, upload_id, number, source_key)


def test_a_segment_whose_copy_failed_is_sealed_by_the_next_request(
    new_store: StoreFactory,
) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        engine.store = cast(ObjectStore, _FailingCopy(engine.store, 1, StorageError))
        record = await create(engine, h)
        cut = PART + MiB
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(DATA[:cut])))
        assert info.value.code is Code.STORAGE_UNAVAILABLE
        # Segment 1 is whole in the store (completed, not copied): all of it counts.
        other = engine_of(h)
        offset = await other.offset(await other.load(record.id))
        assert PART <= offset <= cut
        progress = await other.write(record, WriteRequest(offset, body(DATA[offset:])))
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await leftovers(other.store, record.id) == []

    run(new_store, scenario)


def test_a_store_that_cannot_copy_parts_says_the_file_is_too_large_and_keeps_it(
    new_store: StoreFactory,
) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        engine.store = cast(ObjectStore, _FailingCopy(engine.store, 99, NotImplementedError))
        record = await create(engine, h)
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(DATA), expect=len(DATA)))
        assert info.value.code is Code.TOO_LARGE
        assert "cannot copy parts" in info.value.message
        assert await engine_of(h).offset(await engine.load(record.id)) >= PART

    run(new_store, scenario)


def test_abandoning_mid_segment_removes_the_segment(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        record = await create(engine, h)
        await engine.write(record, WriteRequest(0, body(DATA[: PART + SUB + 3])))
        assert await leftovers(engine.store, record.id) != []
        await engine.terminate(record)
        assert await leftovers(engine.store, record.id) == []
        assert await engine.store.list_multipart("files/") == []

    run(new_store, scenario)


def test_sweep_aborts_the_segments_of_expired_and_vanished_uploads(
    new_store: StoreFactory,
) -> None:
    async def scenario(h: Harness) -> None:
        engine = engine_of(h)
        expired = await create(engine, h)
        await engine.write(expired, WriteRequest(0, body(DATA[: PART + SUB + 3])))
        vanished = await create(engine, h)
        await engine.write(vanished, WriteRequest(0, body(DATA[: SUB + 3])))
        await engine.store.delete(records.info_key(vanished.id))  # its record lost
        live = await create(engine, h)
        await engine.write(live, WriteRequest(0, body(DATA[: SUB + 3])))
        live = await engine.load(live.id)
        live.expires_at = expired.expires_at + 7200
        await engine.intake.save(live)

        report = await sweep(
            Records(engine.store), engine, retention=None, clock=lambda: expired.expires_at + 1,
            multipart_age=0,
        )  # fmt: skip
        assert report.expired_uploads == 1
        assert await leftovers(engine.store, expired.id) == []
        assert [m.key for m in await engine.store.list_multipart("uploads/")] == [
            records.segment_key(live.id, 1)
        ]
        assert await engine_of(h).offset(await engine.load(live.id)) == SUB + 3

    run(new_store, scenario)


def test_the_sub_part_size_chosen_by_the_first_request_stays(new_store: StoreFactory) -> None:
    """A first request declaring a long body takes 32 MiB sub-parts; a later short one,
    which alone would take smaller ones, must not change them once one is stored."""
    length = 200 * MiB
    limit = size_limit(max_upload=1 << 40, buffer_memory=128 * MiB, max_parts=3)
    data = os.urandom(40 * MiB)

    async def scenario(h: Harness) -> None:
        engine = h.engine(budget=128 * MiB, limit=limit)  # type: ignore[arg-type]
        record = await engine.create(h.link, filename="b.bin", length=length, protocol="put")
        first = 32 * MiB  # exactly one sub-part: no tail
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(data[:first]), expect=length))
        assert info.value.code is Code.INCOMPLETE_BODY
        stored = await engine.load(record.id)
        assert (stored.plan.base, stored.plan.sub) == (67 * MiB, 32 * MiB)
        other = h.engine(budget=128 * MiB, limit=limit)  # type: ignore[arg-type]
        rest = data[first:]
        progress = await other.write(record, WriteRequest(first, body(rest), expect=len(rest)))
        assert progress.offset == len(data)
        assert (await other.load(record.id)).plan == stored.plan
        assert await other.offset(await other.load(record.id)) == len(data)

    run(new_store, scenario)
