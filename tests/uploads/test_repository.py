"""The records repository over the file store and over S3 (SeaweedFS).

Records written under the stored layout (spelt out here, as existing data
has it) load through the repository, and what it writes lands there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from gateway.errors import Code, GatewayError
from gateway.signing import new_link_id
from gateway.store.base import ObjectStore
from gateway.uploads.partsize import plan_parts
from gateway.uploads.records import FileRecord, OutboxEntry, UploadRecord, new_id
from gateway.uploads.repository import Records
from tests.uploads.conftest import StoreFactory


def run(new_store: StoreFactory, scenario: Callable[[Records], Awaitable[None]]) -> None:
    async def main() -> None:
        store = new_store()
        try:
            await scenario(Records(store))
        finally:
            await store.close()

    asyncio.run(main())


def a_file(ticket: str = "4242", link_id: str = "", created_at: float = 1000.0) -> FileRecord:
    return FileRecord(
        file_id=new_id(), ticket=ticket, link_id=link_id or new_link_id(), filename="a.bin",
        size=3, sha256="0" * 64, route="attachment", content_type="application/octet-stream",
        protocol="put", created_at=created_at,
    )  # fmt: skip


async def stored_file(store: ObjectStore, file: FileRecord) -> None:
    """A finished file as the upload engine leaves it: bytes, record, both index entries."""
    await store.put(f"files/{file.file_id}/data", b"abc")
    await store.put(f"files/{file.file_id}/meta.json", file.to_bytes())
    await store.put(f"links/{file.link_id}/{file.file_id}", b"")
    await store.put(f"by-ticket/{file.ticket}/{file.file_id}", b"")


def test_a_stored_file_loads_reads_and_is_removed_with_its_entries(
    new_store: StoreFactory,
) -> None:
    async def scenario(records: Records) -> None:
        store = records.store
        file = a_file()
        await stored_file(store, file)
        await store.put(f"outbox/{file.file_id}.json", b"{}")
        assert await records.files.load(file.file_id) == file
        assert b"".join([c async for c in records.files.read(file.file_id)]) == b"abc"
        assert b"".join([c async for c in records.files.read(file.file_id, 1, 2)]) == b"b"
        await records.files.remove(file)
        assert await records.files.load(file.file_id) is None
        for prefix in ("files/", "links/", "by-ticket/", "outbox/"):
            assert await store.list(prefix) == []

    run(new_store, scenario)


def test_a_saved_file_is_where_the_layout_says(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        file = a_file()
        file.status = "delivered"
        await records.files.save(file)
        raw = await records.store.get(f"files/{file.file_id}/meta.json")
        assert raw is not None and FileRecord.from_bytes(raw).status == "delivered"
        assert [f.file_id async for f in records.files.all()] == [file.file_id]

    run(new_store, scenario)


@pytest.mark.parametrize("file_id", ["", "../etc", "x" * 40, "not/an/id"])
def test_loading_something_that_is_no_id_finds_nothing(
    new_store: StoreFactory, file_id: str
) -> None:
    async def scenario(records: Records) -> None:
        assert await records.files.load(file_id) is None

    run(new_store, scenario)


def test_link_and_ticket_indexes_list_their_own_files_oldest_first(
    new_store: StoreFactory,
) -> None:
    async def scenario(records: Records) -> None:
        link = new_link_id()
        late, early = a_file(link_id=link, created_at=2000.0), a_file(link_id=link)
        other = a_file(ticket="9999")
        for file in (late, early, other):
            await stored_file(records.store, file)
        assert await records.links.files(link) == [early, late]
        assert await records.tickets.files("4242") == [early, late]
        assert await records.tickets.files("9999") == [other]
        assert await records.tickets.files("1") == []

    run(new_store, scenario)


def test_pruning_drops_index_entries_whose_file_is_gone(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        kept, gone = a_file(), a_file()
        await stored_file(records.store, kept)
        await records.store.put(f"by-ticket/4242/{gone.file_id}", b"")
        assert await records.tickets.files("4242") == [kept]
        assert len(await records.store.list("by-ticket/4242/")) == 2  # listing alone keeps it
        assert await records.tickets.files("4242", prune=True) == [kept]
        assert [i.key for i in await records.store.list("by-ticket/4242/")] == [
            f"by-ticket/4242/{kept.file_id}"
        ]

    run(new_store, scenario)


def an_upload(expires_at: float) -> UploadRecord:
    return UploadRecord(
        id=new_id(), ticket="4242", link_id=new_link_id(), filename="a.bin", length=10,
        max_size=1 << 30, plan=plan_parts(10, 64 << 20), created_at=1000.0,
        expires_at=expires_at, protocol="put",
    )  # fmt: skip


def test_names_remember_an_unfinished_put_and_stale_ones_are_dropped(
    new_store: StoreFactory,
) -> None:
    async def scenario(records: Records) -> None:
        link = new_link_id()
        live = an_upload(time.time() + 3600)
        await records.store.put(f"uploads/{live.id}/info.json", live.to_bytes())
        await records.names.remember(link, "live.bin", live.id)
        await records.names.remember(link, "gone.bin", new_id())
        assert await records.names.upload_id(link, "live.bin") == live.id
        assert await records.names.upload_id(link, "never.bin") is None
        assert await records.uploads.exists(live.id)
        assert await records.names.drop_stale(records.uploads) == 1
        assert await records.names.upload_id(link, "gone.bin") is None
        assert await records.names.upload_id(link, "live.bin") == live.id
        await records.names.forget(link, "live.bin")
        assert await records.store.list("names/") == []

    run(new_store, scenario)


def test_a_garbled_name_entry_counts_as_no_upload_and_is_swept(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        link = new_link_id()
        await records.names.remember(link, "a.bin", new_id())
        [info] = await records.store.list(f"names/{link}/")
        await records.store.put(info.key, b"not json")
        assert await records.names.upload_id(link, "a.bin") is None
        assert await records.names.drop_stale(records.uploads) == 1

    run(new_store, scenario)


def test_uploads_lists_every_record_and_names_the_unreadable(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        upload = an_upload(2000.0)
        await records.store.put(f"uploads/{upload.id}/info.json", upload.to_bytes())
        await records.store.put(f"uploads/{upload.id}/tail.1", b"xyz")
        await records.store.put("uploads/broken/info.json", b"{")
        unreadable: list[str] = []
        found = [r.id async for r in records.uploads.all(unreadable.append)]
        assert found == [upload.id]
        assert unreadable == ["uploads/broken/info.json"]

    run(new_store, scenario)


def test_outbox_entries_round_trip_and_unreadable_ones_are_passed_over(
    new_store: StoreFactory,
) -> None:
    async def scenario(records: Records) -> None:
        entry = OutboxEntry(file_id=new_id(), ticket="4242", enqueued_at=1000.0)
        await records.outbox.save(entry)
        assert await records.store.head(f"outbox/{entry.file_id}.json") is not None
        await records.store.put("outbox/garbage.json", b"[")
        await records.store.put("outbox/other.tmp", b"{}")
        entry.attempts = 2
        await records.outbox.save(entry)
        assert await records.outbox.pending() == [entry]
        assert await records.outbox.load(entry.file_id) == entry
        await records.outbox.remove(entry.file_id)
        assert await records.outbox.load(entry.file_id) is None

    run(new_store, scenario)


def test_one_replica_at_a_time_holds_a_tickets_delivery_lease(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        async with records.outbox.lease("4242", ttl=15.0):
            assert await records.store.head("outbox-lease/4242") is not None
            with pytest.raises(GatewayError) as caught:
                async with records.outbox.lease("4242", ttl=15.0):
                    pass
            assert caught.value.code is Code.CONFLICT
            async with records.outbox.lease("4243", ttl=15.0):
                pass
        assert await records.store.head("outbox-lease/4242") is None

    run(new_store, scenario)


def test_a_webhook_signature_is_claimed_once_until_released(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        assert await records.replays.claim("sig=")
        assert not await records.replays.claim("sig=")
        assert await records.replays.claim("other=")
        await records.replays.release("sig=")
        assert await records.replays.claim("sig=")
        [first, second] = await records.store.list("webhook-replay/")
        now = max(first.last_modified, second.last_modified)
        assert await records.replays.drop_older_than(600.0, now) == 0
        assert await records.replays.drop_older_than(600.0, now + 601.0) == 2
        assert await records.store.list("webhook-replay/") == []

    run(new_store, scenario)


def test_joined_markers_are_dropped_once_expired_or_unreadable(new_store: StoreFactory) -> None:
    async def scenario(records: Records) -> None:
        store = records.store
        await store.put("joined/fresh", json.dumps({"expires_at": 2000.0}).encode())
        await store.put("joined/old", json.dumps({"expires_at": 500.0}).encode())
        await store.put("joined/broken", b"?")
        assert await records.joined.drop_expired(1000.0) == 2
        assert [i.key for i in await store.list("joined/")] == ["joined/fresh"]

    run(new_store, scenario)
