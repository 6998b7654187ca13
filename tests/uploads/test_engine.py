"""The upload engine in-process, over the file store and over S3 on SeaweedFS.

Parts are 5 MiB here (a 10 MiB budget), so a dozen MiB exercises full parts,
the tail object, resume, restart and the read-back hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any, cast

import pytest

from gateway.errors import Code, GatewayError
from gateway.instrument import InstrumentedStore
from gateway.metrics import Metrics
from gateway.signing import UploadLink, new_link_id
from gateway.store.base import ObjectStore
from gateway.uploads import records
from gateway.uploads.budget import BufferBudget
from gateway.uploads.engine import UploadEngine, WriteRequest
from gateway.uploads.lease import Lease
from gateway.uploads.partsize import DEFAULT_PART, LARGE_PART
from gateway.uploads.records import FileRecord, UploadRecord
from tests.uploads.conftest import StoreFactory

MiB = 1024 * 1024
PART = 5 * MiB
DATA = os.urandom(12 * MiB + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


class Harness:
    def __init__(self, make_store: StoreFactory) -> None:
        self.make_store = make_store
        self.stores: list[ObjectStore] = []
        self.finished: list[FileRecord] = []
        self.link = UploadLink(
            ticket="7001", expires_at=int(time.time()) + 3600, max_size=1 << 40,
            link_id=new_link_id(),
        )  # fmt: skip

    def engine(self, budget: int = 10 * MiB, **options: float) -> UploadEngine:
        """A fresh engine on a fresh store instance: a restart, or another replica."""
        store = self.make_store()
        self.stores.append(store)

        async def on_finished(file: FileRecord) -> None:
            self.finished.append(file)

        return UploadEngine(
            store,
            BufferBudget(budget),
            attachment_max=1 * MiB,
            on_finished=on_finished,
            **options,  # type: ignore[arg-type]
        )

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


def run(make_store: StoreFactory, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    harness = Harness(make_store)

    async def main() -> None:
        try:
            await scenario(harness)
        finally:
            await harness.close()

    asyncio.run(main())


def chunks_of(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def body(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for chunk in chunks_of(data, size):
        yield chunk


async def read_all(store: ObjectStore, file_id: str) -> bytes:
    return b"".join([c async for c in store.read(records.data_key(file_id))])


async def offset_seen_by(engine: UploadEngine, upload_id: str) -> int:
    """The offset as any replica sees it: from the stored record and parts."""
    return await engine.offset(await engine.load(upload_id))


async def create(engine: UploadEngine, link: UploadLink, length: int | None) -> UploadRecord:
    return await engine.create(link, filename="trace.bin", length=length, protocol="put")


def test_single_request_finishes_with_the_right_hash(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        progress = await engine.write(
            record, WriteRequest(0, body(DATA), final=True, expect=len(DATA))
        )
        assert progress.file is not None
        assert progress.file.sha256 == SHA and progress.file.size == len(DATA)
        assert progress.file.route == "storage"
        assert await read_all(engine.store, record.id) == DATA
        assert [f.file_id for f in h.finished] == [record.id]
        assert await engine.store.list(f"uploads/{record.id}/") == []

    run(new_store, scenario)


def test_resume_from_the_tail(new_store: StoreFactory) -> None:
    cut = PART + 2 * MiB + 7  # one full part and a tail

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        progress = await engine.write(record, WriteRequest(0, body(DATA[:cut])))
        assert progress.file is None and progress.offset == cut
        assert await engine.offset(await engine.load(record.id)) == cut
        tails = await engine.store.list(records.tail_prefix(record.id))
        assert [t.size for t in tails] == [cut - PART]
        progress = await engine.write(
            record, WriteRequest(cut, body(DATA[cut:]), expect=len(DATA) - cut)
        )
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await read_all(engine.store, record.id) == DATA

    run(new_store, scenario)


def test_parts_fit_the_first_request_and_then_stay(new_store: StoreFactory) -> None:
    """A first request of two large parts or more takes large parts; a shorter one, the default.

    The plan is chosen under the lease before the first byte is stored and never
    changes after (a later long request does not change it).
    """
    data = os.urandom(2 * LARGE_PART + 3 * MiB)
    long_first = 2 * LARGE_PART

    async def scenario(h: Harness) -> None:
        engine = h.engine(budget=128 * MiB)
        for first, part in ((long_first, LARGE_PART), (DEFAULT_PART, DEFAULT_PART)):
            record = await create(engine, h.link, len(data))
            assert record.plan.base == DEFAULT_PART
            progress = await engine.write(record, WriteRequest(0, body(data[:first]), expect=first))
            assert progress.offset == first
            loaded = await engine.load(record.id)
            assert loaded.plan.base == part
            assert loaded.multipart_id is not None
            parts = await engine.store.list_parts(records.data_key(record.id), loaded.multipart_id)
            assert {p.size for p in parts} == {part}
            rest = len(data) - first
            progress = await engine.write(
                loaded, WriteRequest(first, body(data[first:]), expect=rest)
            )
            assert progress.file is not None
            assert progress.file.sha256 == hashlib.sha256(data).hexdigest()
            assert await read_all(engine.store, record.id) == data

    run(new_store, scenario)


def test_a_cut_long_first_request_keeps_its_large_parts_on_another_replica(
    new_store: StoreFactory,
) -> None:
    """A long first request cut mid-part leaves a large part, a tail and its plan.

    Short requests on a fresh engine (another replica) go on with that plan.
    """
    data = os.urandom(2 * LARGE_PART + 3 * MiB)
    cut = LARGE_PART + 5 * MiB  # one large part and a tail

    async def scenario(h: Harness) -> None:
        first = h.engine(budget=128 * MiB)
        record = await create(first, h.link, len(data))
        with pytest.raises(GatewayError) as info:
            await first.write(record, WriteRequest(0, body(data[:cut]), expect=len(data)))
        assert info.value.code is Code.INCOMPLETE_BODY
        other = h.engine(budget=128 * MiB)
        loaded = await other.load(record.id)
        assert loaded.plan.base == LARGE_PART
        assert await other.offset(loaded) == cut
        tails = await other.store.list(records.tail_prefix(record.id))
        assert [t.size for t in tails] == [cut - LARGE_PART]
        offset = cut
        while True:  # the rest in short requests, as the page would send it
            end = min(offset + DEFAULT_PART, len(data))
            chunk = body(data[offset:end])
            progress = await other.write(loaded, WriteRequest(offset, chunk, expect=end - offset))
            if end == len(data):
                break
            assert (await other.load(record.id)).plan.base == LARGE_PART
            offset = progress.offset
        assert progress.file is not None
        assert progress.file.sha256 == hashlib.sha256(data).hexdigest()
        assert await read_all(other.store, record.id) == data

    run(new_store, scenario)


def test_offset_comes_from_the_store_after_a_restart(new_store: StoreFactory) -> None:
    cut = 2 * PART + 1 * MiB

    async def scenario(h: Harness) -> None:
        first = h.engine()
        record = await create(first, h.link, len(DATA))
        await first.write(record, WriteRequest(0, body(DATA[:cut])))
        fresh = h.engine()  # nothing in memory: a restart or another replica
        again = await fresh.load(record.id)
        assert await fresh.offset(again) == cut
        with pytest.raises(GatewayError) as info:
            await fresh.write(again, WriteRequest(0, body(b"x")))
        assert info.value.code is Code.OFFSET_MISMATCH
        assert info.value.headers["Upload-Offset"] == str(cut)
        progress = await fresh.write(again, WriteRequest(cut, body(DATA[cut:])))
        assert progress.file is not None
        # The fresh engine never saw the first bytes: it hashed the stored file back.
        assert progress.file.sha256 == SHA
        meta = await fresh.store.get(records.meta_key(record.id))
        assert meta is not None and FileRecord.from_bytes(meta).sha256 == SHA
        assert await read_all(fresh.store, record.id) == DATA

    run(new_store, scenario)


def test_resume_in_many_small_requests_across_engines(new_store: StoreFactory) -> None:
    data = DATA[: 11 * MiB]
    cuts = [0, 3 * MiB, 4 * MiB + 1, 9 * MiB, len(data)]

    async def scenario(h: Harness) -> None:
        record = await create(h.engine(), h.link, len(data))
        file = None
        for start, end in zip(cuts, cuts[1:], strict=False):
            engine = h.engine()
            progress = await engine.write(
                record, WriteRequest(start, body(data[start:end], 100_000))
            )
            assert progress.offset == end
            file = progress.file
        assert file is not None and file.sha256 == hashlib.sha256(data).hexdigest()

    run(new_store, scenario)


def test_checksum_failure_discards_the_requests_bytes(new_store: StoreFactory) -> None:
    first = 3 * MiB

    def reject(state: object) -> None:
        raise GatewayError(Code.CHECKSUM_MISMATCH)

    def accept(state: object) -> None:
        assert state.hexdigest() == hashlib.sha256(DATA[first:]).hexdigest()  # type: ignore[attr-defined]

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        await engine.write(record, WriteRequest(0, body(DATA[:first])))
        # This request crosses a part boundary: part 1 lands in the store, yet must not count.
        bad = DATA[first : first + 4 * MiB]
        with pytest.raises(GatewayError) as info:
            await engine.write(
                record, WriteRequest(first, body(bad), checksum=hashlib.sha256, verify=reject)
            )
        assert info.value.code is Code.CHECKSUM_MISMATCH
        assert await engine.offset(await engine.load(record.id)) == first
        assert await offset_seen_by(h.engine(), record.id) == first
        progress = await engine.write(
            record, WriteRequest(first, body(DATA[first:]), checksum=hashlib.sha256, verify=accept)
        )
        assert progress.file is not None and progress.file.sha256 == SHA
        assert await read_all(engine.store, record.id) == DATA

    run(new_store, scenario)


def test_concurrent_writes_conflict(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        gate = asyncio.Event()

        async def held() -> AsyncIterator[bytes]:
            yield DATA[:1000]
            await gate.wait()
            yield DATA[1000:2000]

        writing = asyncio.create_task(engine.write(record, WriteRequest(0, held())))
        for _ in range(200):
            if await engine.store.get(records.lock_key(record.id)) is not None:
                break
            await asyncio.sleep(0.01)
        for other in (engine, h.engine()):
            with pytest.raises(GatewayError) as info:
                await other.write(record, WriteRequest(0, body(DATA[:10])))
            assert info.value.code is Code.CONFLICT
            assert info.value.status == 409
            assert "Retry-After" in info.value.headers
        gate.set()
        progress = await writing
        assert progress.offset == 2000
        assert await engine.offset(await engine.load(record.id)) == 2000

    run(new_store, scenario)


def test_a_writer_waits_for_a_live_one_then_continues_where_it_ended(
    new_store: StoreFactory,
) -> None:
    """Never two writers at once: the second waits for the lease, then writes after the first."""

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        gate = asyncio.Event()

        async def held() -> AsyncIterator[bytes]:
            yield DATA[:1000]
            await gate.wait()
            yield DATA[1000:2000]

        writing = asyncio.create_task(engine.write(record, WriteRequest(0, held())))
        for _ in range(200):
            if await engine.store.get(records.lock_key(record.id)) is not None:
                break
            await asyncio.sleep(0.01)
        patient = h.engine(lease_wait=30.0)
        second = asyncio.create_task(
            patient.write(record, WriteRequest(2000, body(DATA[2000:3000])))
        )
        await asyncio.sleep(0.5)
        assert not second.done()  # waiting, not writing
        gate.set()
        assert (await writing).offset == 2000
        assert (await asyncio.wait_for(second, 30)).offset == 3000
        assert await engine.offset(await engine.load(record.id)) == 3000

    run(new_store, scenario)


def test_a_writer_waits_out_a_dead_writers_lease(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        dead = Lease(engine.store, records.lock_key(record.id), ttl=1.0)
        await dead.acquire()
        assert dead._renewer is not None
        dead._renewer.cancel()  # its process died mid-request
        patient = h.engine(lease_wait=30.0)
        progress = await patient.write(record, WriteRequest(0, body(DATA), expect=len(DATA)))
        assert progress.file is not None and progress.file.sha256 == SHA

    run(new_store, scenario)


def test_short_body_is_incomplete_but_keeps_its_bytes(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, len(DATA))
        with pytest.raises(GatewayError) as info:
            await engine.write(
                record, WriteRequest(0, body(DATA[: 6 * MiB]), final=True, expect=len(DATA))
            )
        assert info.value.code is Code.INCOMPLETE_BODY
        assert await engine.offset(await engine.load(record.id)) == 6 * MiB
        assert h.finished == []
        assert await engine.store.head(records.data_key(record.id)) is None

    run(new_store, scenario)


def test_body_longer_than_the_length_is_refused(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, 1000)
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(DATA[:2000], 500)))
        assert info.value.code is Code.BODY_TOO_LONG
        assert h.finished == []
        assert await engine.store.head(records.data_key(record.id)) is None
        # Declared too long up front: refused before a byte is read.
        record = await create(engine, h.link, 1000)
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(DATA[:2000]), expect=2000))
        assert info.value.code is Code.BODY_TOO_LONG
        assert await offset_seen_by(engine, record.id) == 0
        assert h.finished == []

    run(new_store, scenario)


def test_unknown_length_over_the_link_cap_is_too_large(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        small = UploadLink(ticket="7001", expires_at=h.link.expires_at, max_size=3000,
                           link_id=new_link_id())  # fmt: skip
        with pytest.raises(GatewayError) as info:
            await create(engine, small, 3001)
        assert info.value.code is Code.TOO_LARGE
        record = await create(engine, small, None)
        with pytest.raises(GatewayError) as info:
            await engine.write(record, WriteRequest(0, body(DATA[:4000], 1000), final=True))
        assert info.value.code is Code.TOO_LARGE
        assert h.finished == []

    run(new_store, scenario)


def test_the_gateway_limit_holds_a_link_with_a_larger_cap(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()  # a 10 MiB budget: parts past 5 MiB are segments
        largest = engine.limit.largest
        link = replace(h.link, max_size=1 << 50)
        assert largest == 10_000 * 5 * 1024 * MiB < link.max_size
        record = await create(engine, link, largest)
        assert record.max_size == largest
        assert record.plan.sub == PART and record.plan.base == 5 * 1024 * MiB
        await engine.abandon(record)
        with pytest.raises(GatewayError) as info:
            await create(engine, link, largest + 1)
        assert info.value.code is Code.TOO_LARGE
        assert f"this gateway accepts at most {largest:,} bytes (48.8 TiB)" in info.value.message
        unknown = await create(engine, link, None)
        assert unknown.max_size == engine.limit.streamed <= largest
        await engine.abandon(unknown)

    run(new_store, scenario)


def test_small_file_is_an_attachment_and_abandon_cleans_up(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, None)
        progress = await engine.write(record, WriteRequest(0, body(DATA[:MiB]), final=True))
        assert progress.file is not None and progress.file.route == "attachment"
        assert progress.file.size == MiB
        other = await create(engine, h.link, len(DATA))
        await engine.write(other, WriteRequest(0, body(DATA[: PART + 10])))
        assert await engine.store.list_multipart(records.data_key(other.id)) != []
        await engine.terminate(await engine.load(other.id))
        assert await engine.store.list(f"uploads/{other.id}/") == []
        assert await engine.store.list_multipart(records.data_key(other.id)) == []

    run(new_store, scenario)


def test_terminate_with_the_record_as_created_aborts_the_multipart(
    new_store: StoreFactory,
) -> None:
    """Callers hold the record create() gave them; the multipart id is only in the store."""

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        record = await create(engine, h.link, None)
        await engine.write(record, WriteRequest(0, body(DATA[: PART + 10])))
        assert record.multipart_id is None  # the caller's copy never learns it
        assert await engine.store.list_multipart(records.data_key(record.id)) != []
        await engine.terminate(record)
        assert await engine.store.list_multipart(records.data_key(record.id)) == []
        assert await engine.store.list(f"uploads/{record.id}/") == []

    run(new_store, scenario)


async def complete_partial(engine: UploadEngine, link: UploadLink, data: bytes) -> str:
    record = await engine.create(
        link, filename="piece", length=len(data), protocol="tus", concat=records.PARTIAL
    )
    progress = await engine.write(record, WriteRequest(0, body(data), final=True, expect=len(data)))
    assert progress.file is None  # a partial is never a file
    return record.id


def test_an_assembly_whose_process_died_is_resumed_by_any_engine(new_store: StoreFactory) -> None:
    """A final upload recorded by an engine that then died (nothing started its copy) is
    found and finished by another engine's check; the check then has nothing left to do."""

    async def scenario(h: Harness) -> None:
        first = h.engine()
        halves = [DATA[: 6 * MiB], DATA[6 * MiB :]]
        sources = [await complete_partial(first, h.link, half) for half in halves]
        final = await first.concatenate(h.link, sources, filename="joined.bin")
        assert await first.store.list(records.ASSEMBLING_PREFIX) != []
        # `first` dies here. Another replica's check picks the final upload up.
        other = h.engine()
        assert await other.resume_assemblies() == 1
        file = await other.start_assembly(final)  # the task the check started
        assert file is not None and file.sha256 == SHA and file.file_id == final.id
        assert await read_all(other.store, final.id) == DATA
        assert [f.file_id for f in h.finished] == [final.id]
        assert await other.store.list(records.ASSEMBLING_PREFIX) == []
        assert await other.resume_assemblies() == 0

    run(new_store, scenario)


def test_the_assembly_check_drops_markers_of_final_uploads_that_cannot_finish(
    new_store: StoreFactory,
) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        # A marker whose final upload was never recorded (or is gone).
        await engine.store.put(records.assembling_key(new_link_id()), b"")
        # A final upload whose partial upload vanished: it can never finish.
        source = await complete_partial(engine, h.link, DATA[:MiB])
        final = await engine.concatenate(h.link, [source], filename="lost.bin")
        await engine.store.delete(records.data_key(source))
        assert await engine.resume_assemblies() == 1
        with pytest.raises(GatewayError) as failed:
            await engine.start_assembly(final)
        assert failed.value.code is Code.GONE
        assert await engine.store.list(records.ASSEMBLING_PREFIX) == []
        assert await engine.resume_assemblies() == 0
        assert h.finished == []

    run(new_store, scenario)


def test_the_check_finishes_the_claims_of_a_post_that_died_claiming(
    new_store: StoreFactory,
) -> None:
    """A final upload's POST died after claiming some of its partial uploads: the check
    claims the rest and then copies it."""

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        sources = [await complete_partial(engine, h.link, DATA[:MiB]) for _ in range(2)]
        final = await engine.concatenate(h.link, sources, filename="claiming.bin")
        claim = records.final_key(sources[1])
        await engine.store.delete(claim)  # as if the POST had died before this claim
        other = h.engine()
        assert await other.resume_assemblies() == 1
        assert await other.store.get(claim) == final.id.encode()
        file = await other.start_assembly(final)
        assert file is not None and file.size == 2 * MiB
        assert [f.file_id for f in h.finished] == [final.id]

    run(new_store, scenario)


def test_the_check_drops_a_final_upload_that_lost_its_partials_to_another(
    new_store: StoreFactory,
) -> None:
    """Two final uploads of the same partial uploads: the one that owns them is copied,
    the other (its POST died before it found out) is dropped, not copied: one file."""

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        sources = [await complete_partial(engine, h.link, DATA[:MiB]) for _ in range(2)]
        winner = await engine.concatenate(h.link, sources, filename="one.bin")
        # The loser's record and marker, written before its POST died, before any claim.
        loser = await engine.create(
            h.link, filename="one.bin", length=2 * MiB, protocol="tus",
            concat=records.FINAL, sources=sources,
        )  # fmt: skip
        await engine.store.put(records.assembling_key(loser.id), b"")
        assert await engine.resume_assemblies() == 1  # the winner only
        file = await engine.start_assembly(winner)
        assert file is not None and file.file_id == winner.id
        assert await engine.store.get(records.info_key(loser.id)) is None
        assert await engine.store.list(records.ASSEMBLING_PREFIX) == []
        assert [f.file_id for f in h.finished] == [winner.id]

    run(new_store, scenario)


def test_the_keeper_runs_the_check_in_the_background(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        first = h.engine()
        sources = [await complete_partial(first, h.link, DATA)]
        final = await first.concatenate(h.link, sources, filename="kept.bin")
        other = h.engine()
        other.start_keeper(interval=0.05)
        deadline = time.monotonic() + 60
        while not h.finished and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await other.close()  # stops the keeper too
        assert [f.file_id for f in h.finished] == [final.id]
        assert h.finished[0].sha256 == SHA

    run(new_store, scenario)


def _calls(metrics: Metrics, op: str) -> float:
    value = metrics.registry.get_sample_value("gateway_storage_request_seconds_count", {"op": op})
    return value or 0.0


def test_an_assembly_joins_the_partials_inside_the_store(new_store: StoreFactory) -> None:
    """No byte of the partial uploads is written again: the store joins them (links or
    server-side copies) and the receipt's SHA-256 is read back from the joined file."""

    async def scenario(h: Harness) -> None:
        metrics = Metrics(process=False)
        engine = h.engine()
        engine.store = InstrumentedStore(engine.store, metrics)
        pieces = [DATA[: 6 * MiB], DATA[6 * MiB : 6 * MiB + 100], DATA[6 * MiB + 100 :]]
        sources = [await complete_partial(engine, h.link, piece) for piece in pieces]
        written = _calls(metrics, "upload_part")
        final = await engine.concatenate(h.link, sources, filename="joined.bin")
        file = await engine.start_assembly(final)
        assert file is not None and (file.sha256, file.size) == (SHA, len(DATA))
        assert await read_all(engine.store, final.id) == DATA
        assert _calls(metrics, "compose") == 1
        # The engine's part writer sent nothing: the store joined the partials itself
        # (what S3 copies and what it sends is the plan's, tests/store/test_compose.py).
        assert _calls(metrics, "upload_part") == written
        assert _calls(metrics, "create_multipart") == len(pieces) - 1  # the partials' own
        for source in sources:
            assert await engine.store.head(records.data_key(source)) is None

    run(new_store, scenario)


def test_a_join_whose_process_died_before_recording_it_is_finished(
    new_store: StoreFactory,
) -> None:
    """Killed between the join and the file record: the data object is there, and the
    next check hashes it and records the file once."""

    async def scenario(h: Harness) -> None:
        first = h.engine()
        halves = [DATA[: 7 * MiB], DATA[7 * MiB :]]
        sources = [await complete_partial(first, h.link, half) for half in halves]
        final = await first.concatenate(h.link, sources, filename="joined.bin")
        await first.store.compose(
            records.data_key(final.id), [records.data_key(s) for s in sources]
        )
        # `first` dies here, the file unrecorded.
        other = h.engine()
        assert await other.resume_assemblies() == 1
        file = await other.start_assembly(final)
        assert file is not None and file.sha256 == SHA
        assert [f.file_id for f in h.finished] == [final.id]
        assert await other.store.list(records.ASSEMBLING_PREFIX) == []

    run(new_store, scenario)


class _CannotCompose:
    """A store that cannot join objects itself (an S3 server without UploadPartCopy)."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def compose(self, key: str, sources: list[str], content_type: str | None = None) -> str:
        raise NotImplementedError("no UploadPartCopy here")


def test_a_store_that_cannot_join_gets_the_bytes_copied(new_store: StoreFactory) -> None:
    async def scenario(h: Harness) -> None:
        engine = h.engine()
        engine.store = cast(ObjectStore, _CannotCompose(engine.store))
        halves = [DATA[: 6 * MiB], DATA[6 * MiB :]]
        sources = [await complete_partial(engine, h.link, half) for half in halves]
        final = await engine.concatenate(h.link, sources, filename="copied.bin")
        file = await engine.start_assembly(final)
        assert file is not None and file.sha256 == SHA
        assert await read_all(engine.store, final.id) == DATA

    run(new_store, scenario)


def test_a_final_upload_claiming_partials_just_joined_by_another_is_dropped(
    new_store: StoreFactory,
) -> None:
    """Another final upload became a file and is removing its claims while a repeated
    final POST takes them: the joined markers (written first) make that POST drop its
    final upload instead of owning partial uploads that are going away."""

    async def scenario(h: Harness) -> None:
        engine = h.engine()
        sources = [await complete_partial(engine, h.link, DATA[:100]) for _ in range(2)]
        await engine.store.put(records.joined_key(sources[0]), b"{}")
        with pytest.raises(GatewayError) as caught:
            await engine.concatenate(h.link, sources, filename="late.bin")
        assert caught.value.code is Code.CONFLICT
        for source in sources:
            assert await engine.store.head(records.final_key(source)) is None
        assert await engine.resume_assemblies() == 0  # its marker names no final upload

    run(new_store, scenario)
