"""The outbox's pure parts (backoff, batching, refusal) and its pending gauges.

The gauges are checked on a real file store and real local tickets with a
clock the test moves, so no waiting is involved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery import comments
from gateway.delivery.outbox import BACKOFF_MAX, Outbox, backoff, batches, is_refusal
from gateway.links import Links
from gateway.settings import Settings
from gateway.store.file import FileStore
from gateway.tickets.base import TicketError
from gateway.tickets.local import LocalTickets
from gateway.uploads import records
from gateway.uploads.records import FileRecord


def file(size: int, route: str = "attachment", file_id: str = "") -> FileRecord:
    return FileRecord(
        file_id=file_id or records.new_id(),
        ticket="42",
        link_id="L",
        filename="f.bin",
        size=size,
        sha256="0" * 64,
        route=route,
        content_type="application/octet-stream",
        protocol="put",
        created_at=0.0,
    )


# -- backoff ---------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10_000))
def test_backoff_is_positive_and_capped(attempts: int) -> None:
    delay = backoff(attempts)
    assert 0 < delay <= BACKOFF_MAX


def test_backoff_grows_until_the_cap() -> None:
    # Jitter keeps each delay within [half, all] of the nominal 2 * 2**n seconds.
    for attempts in range(1, 7):
        nominal = min(BACKOFF_MAX, 2.0 * 2**attempts)
        for _ in range(50):
            assert nominal / 2 <= backoff(attempts) <= nominal
    assert min(backoff(40) for _ in range(50)) >= BACKOFF_MAX / 2


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_retry_after_is_honoured_within_bounds(retry_after: float) -> None:
    delay = backoff(3, retry_after)
    expected = min(max(retry_after, 0.5), 3600.0)
    assert expected <= delay <= expected + 0.5


# -- batching by the attachment cap -------------------------------------------------------


def lines_of(*sizes: int, link_every: int = 0) -> list[comments.CommentLine]:
    out = []
    for n, size in enumerate(sizes):
        if link_every and n % link_every == 0:
            out.append(comments.CommentLine(file=file(size, "storage"), download_url="u"))
        else:
            out.append(comments.CommentLine(file=file(size)))
    return out


def test_batches_respect_the_cap_and_keep_order() -> None:
    lines = lines_of(30, 30, 30, 50, 10)
    got = batches(lines, 60)
    assert [[line.file.size for line in b] for b in got] == [[30, 30], [30], [50, 10]]


def test_links_weigh_nothing_and_an_oversized_file_gets_its_own_comment() -> None:
    lines = lines_of(10**9, 40, 40, link_every=3)  # the first is a link line
    assert [len(b) for b in batches(lines, 50)] == [2, 1]
    oversized = lines_of(10, 500, 10)
    assert [[line.file.size for line in b] for b in batches(oversized, 100)] == [
        [10],
        [500],
        [10],
    ]


def test_batches_name_at_most_max_files_each() -> None:
    lines = lines_of(*([10] * 7), link_every=2)
    assert [len(b) for b in batches(lines, 10**9, max_files=3)] == [3, 3, 1]
    assert [len(b) for b in batches(lines, 25, max_files=3)] == [3, 3, 1]
    assert [len(b) for b in batches(lines, 10**9)] == [7]


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=40), st.integers(1, 300))
def test_every_line_is_in_exactly_one_batch_within_the_cap(sizes: list[int], cap: int) -> None:
    lines = lines_of(*sizes)
    got = batches(lines, cap)
    flat = [line for b in got for line in b]
    assert [id(x) for x in flat] == [id(x) for x in lines]
    for b in got:
        assert b, "no empty comment"
        assert len(b) == 1 or sum(line.file.size for line in b) <= cap


# -- what counts as a refusal -----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (TicketError("HTTP 401: unauthorized", retryable=False, status=401), True),
        (TicketError("HTTP 404 (RecordNotFound)", retryable=False, status=404), True),
        (TicketError("HTTP 422 (closed prevents update)", retryable=False, status=422), True),
        (
            TicketError(
                "HTTP 422 (uploads: Uploads token abc is invalid or has expired)",
                retryable=False,
                status=422,
            ),
            False,
        ),
        (TicketError("HTTP 503", retryable=True, status=503, retry_after=2), False),
        (TicketError("ConnectError", retryable=True), False),
    ],
)
def test_is_refusal(error: TicketError, refused: bool) -> None:
    assert is_refusal(error) is refused


# -- the pending gauges ------------------------------------------------------------------


def test_pending_count_and_oldest_age_follow_enqueue_and_delivery(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = FileStore(tmp_path / "store")
    tickets = LocalTickets(tmp_path / "tickets")
    settings = Settings(secret=b"s" * 40, data_dir=tmp_path)
    outbox = Outbox(store, tickets, Links(settings), batch_window=0.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert (outbox.pending, outbox.oldest_age) == (0, 0.0)
        first, second = file(5, file_id="a" * 20), file(6, file_id="b" * 20)
        for f in (first, second):
            await store.put(records.meta_key(f.file_id), f.to_bytes())
            await store.put(records.data_key(f.file_id), b"x" * f.size)
        await outbox.enqueue(first)
        now[0] += 30
        await outbox.enqueue(second)
        now[0] += 10
        # The age is measured now, not at the last pass.
        assert (outbox.pending, outbox.oldest_age) == (2, 40.0)

        # A fresh process sees the same from the store's listing.
        other = Outbox(store, tickets, Links(settings), batch_window=0.0, clock=lambda: now[0])
        other.poll_interval = 0.0
        await other.run_once()
        assert other.pending == 0 and other.oldest_age == 0.0  # delivered in that pass
        delivered = await tickets.ticket("42")
        assert sum(c["body"].count("[upload-gateway file") for c in delivered["comments"]) == 2
        await outbox.run_once()
        assert (outbox.pending, outbox.oldest_age) == (0, 0.0)
        await store.close()

    asyncio.run(scenario())
