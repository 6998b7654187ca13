"""The part writer on its own (no engine front, no lease): bytes into parts and a tail,
on the file store and on SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.errors import Code, GatewayError
from gateway.signing import UploadLink, new_link_id
from gateway.uploads import offsets, records
from gateway.uploads.budget import BufferBudget
from gateway.uploads.context import Intake
from gateway.uploads.finish import Finisher
from gateway.uploads.limit import size_limit
from gateway.uploads.partsize import PartPlan
from gateway.uploads.records import FileRecord, UploadRecord
from gateway.uploads.writer import WriteRequest, write_locked
from tests.uploads.conftest import StoreFactory

MiB = 1024 * 1024
PART = 5 * MiB
DATA = os.urandom(2 * PART + 4321)


async def _body(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


Scenario = Callable[[Intake, Finisher, UploadRecord, list[FileRecord]], Awaitable[None]]


def _run(make_store: StoreFactory, scenario: Scenario) -> None:
    async def main() -> None:
        finished: list[FileRecord] = []

        async def on_finished(file: FileRecord) -> None:
            finished.append(file)

        store = make_store()
        intake = Intake(
            store=store,
            budget=BufferBudget(10 * MiB),
            limit=size_limit(max_upload=1 << 40, buffer_memory=10 * MiB),
            attachment_max=MiB,
            on_finished=on_finished,
        )
        link = UploadLink(ticket="9", expires_at=int(time.time()) + 600, max_size=1 << 40,
                          link_id=new_link_id())  # fmt: skip
        now = time.time()
        record = UploadRecord(
            id=records.new_id(), ticket=link.ticket, link_id=link.link_id, filename="w.bin",
            length=len(DATA), max_size=1 << 40, plan=PartPlan(base=PART, cap=PART, fixed=True),
            created_at=now, expires_at=now + 600, protocol="put",
        )  # fmt: skip
        await intake.save(record)
        try:
            await scenario(intake, Finisher(intake), record, finished)
        finally:
            await store.close()

    asyncio.run(main())


def test_a_request_ending_mid_part_keeps_full_parts_and_a_tail(new_store: StoreFactory) -> None:
    async def scenario(
        intake: Intake, finisher: Finisher, record: UploadRecord, finished: list[FileRecord]
    ) -> None:
        cut = PART + 1234
        progress = await write_locked(intake, finisher, record, WriteRequest(0, _body(DATA[:cut])))
        assert progress.offset == cut and progress.file is None
        stored = await offsets.stored(intake.store, record)
        assert stored.offset == cut
        assert [p.number for p in stored.parts] == [1] and stored.tail == DATA[PART:cut]
        rest = WriteRequest(cut, _body(DATA[cut:]), expect=len(DATA) - cut)
        progress = await write_locked(intake, finisher, record, rest)
        assert progress.file is not None
        assert progress.file.sha256 == hashlib.sha256(DATA).hexdigest()
        assert finished == [progress.file]
        assert await intake.store.list(records.upload_prefix(record.id)) == []

    _run(new_store, scenario)


def test_a_rejected_checksum_keeps_nothing_of_the_request(new_store: StoreFactory) -> None:
    async def scenario(
        intake: Intake, finisher: Finisher, record: UploadRecord, finished: list[FileRecord]
    ) -> None:
        first = PART + 100
        await write_locked(intake, finisher, record, WriteRequest(0, _body(DATA[:first])))

        def reject(_: object) -> None:
            raise GatewayError(Code.CHECKSUM_MISMATCH)

        bad = WriteRequest(first, _body(DATA[first:]), checksum=hashlib.sha256, verify=reject)
        with pytest.raises(GatewayError):
            await write_locked(intake, finisher, record, bad)
        assert (await offsets.stored(intake.store, record)).offset == first
        assert finished == []

    _run(new_store, scenario)


def test_a_request_at_the_wrong_offset_is_told_the_right_one(new_store: StoreFactory) -> None:
    async def scenario(
        intake: Intake, finisher: Finisher, record: UploadRecord, finished: list[FileRecord]
    ) -> None:
        await write_locked(intake, finisher, record, WriteRequest(0, _body(DATA[:1000])))
        with pytest.raises(GatewayError) as caught:
            await write_locked(intake, finisher, record, WriteRequest(0, _body(b"x")))
        assert caught.value.code is Code.OFFSET_MISMATCH
        assert caught.value.headers["Upload-Offset"] == "1000"

    _run(new_store, scenario)
