"""How the upload client cuts a file into partial uploads, and when it does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.client.streams import (
    AUTO_STREAMS,
    MIN_RANGE,
    Offer,
    Part,
    Span,
    choose,
    final_header,
    parts_entry,
    read_final,
    read_parts,
    split,
)

MiB = 1024 * 1024
ENDPOINT = "http://gw/u/tok/tus/"
WITH_CONCAT = "creation,creation-with-upload,termination,checksum,concatenation"
WITHOUT_CONCAT = "creation,creation-with-upload,creation-defer-length,termination,checksum"


def test_split_a_large_file_into_even_ranges_of_whole_chunks() -> None:
    size = 1000 * MiB + 5
    spans = split(size, 4, 16 * MiB)
    # 63 chunks (62 whole, one of 5 bytes): 16, 16, 16, 15.
    assert spans == [
        Span(0, 256 * MiB),
        Span(256 * MiB, 512 * MiB),
        Span(512 * MiB, 768 * MiB),
        Span(768 * MiB, size),
    ]


def test_small_files_get_fewer_streams_or_one_upload() -> None:
    chunk = 16 * MiB
    assert split(2 * chunk - 1, 4, chunk) == [Span(0, 2 * chunk - 1)]  # not two whole chunks
    assert split(2 * chunk, 4, chunk) == [Span(0, chunk), Span(chunk, 2 * chunk)]
    assert len(split(3 * chunk + 1, 4, chunk)) == 3
    assert split(0, 4, chunk) == [Span(0, 0)]
    assert split(100 * chunk, 1, chunk) == [Span(0, 100 * chunk)]  # --streams 1


def test_small_chunks_still_make_ranges_of_at_least_5_mib() -> None:
    # 1 MiB chunks: a range is at least five of them.
    assert split(10 * MiB - 1, 4, MiB) == [Span(0, 10 * MiB - 1)]
    assert split(10 * MiB, 4, MiB) == [Span(0, 5 * MiB), Span(5 * MiB, 10 * MiB)]
    # 3 MiB chunks: two of them (6 MiB) per range.
    assert split(12 * MiB, 4, 3 * MiB) == [Span(0, 6 * MiB), Span(6 * MiB, 12 * MiB)]


@given(
    size=st.integers(min_value=0, max_value=1 << 40),
    streams=st.integers(min_value=1, max_value=16),
    chunk=st.integers(min_value=1, max_value=256 * MiB),
)
def test_split_covers_the_file_in_order_with_chunk_aligned_ranges(
    size: int, streams: int, chunk: int
) -> None:
    spans = split(size, streams, chunk)
    assert 1 <= len(spans) <= streams
    assert spans[0].start == 0 and spans[-1].end == size
    for before, after in zip(spans, spans[1:], strict=False):
        assert before.end == after.start
    if len(spans) > 1:
        for span in spans[:-1]:
            assert span.length >= MIN_RANGE and span.length >= chunk
            assert span.start % chunk == 0 and span.length % chunk == 0
        assert spans[-1].length > 0
        lengths = [-(-s.length // chunk) for s in spans]  # chunks per range
        assert max(lengths) - min(lengths) <= 1


def test_offer_reads_the_options_answer() -> None:
    assert Offer.parse(WITH_CONCAT, "1099511627776") == Offer(True, 1 << 40)
    assert Offer.parse("creation, Concatenation", None) == Offer(True, None)
    assert not Offer.parse(WITHOUT_CONCAT, "100").concatenation
    assert not Offer.parse("concatenation-unfinished", None).concatenation
    assert Offer.parse(None, None) == Offer(False, None)
    assert Offer.parse("", "lots") == Offer(False, None)


def test_choose_falls_back_to_one_upload_without_concatenation_or_over_the_cap() -> None:
    size = 200 * MiB
    chunk = 16 * MiB
    asked: list[Offer] = []

    def server(extensions: str | None, max_size: str | None = None) -> Callable[[], Offer]:
        def ask() -> Offer:
            asked.append(Offer.parse(extensions, max_size))
            return asked[-1]

        return ask

    whole = [Span(0, size)]
    assert choose(size, streams=4, chunk_size=chunk, offer=server(WITHOUT_CONCAT)) == whole
    assert choose(size, streams=4, chunk_size=chunk, offer=server(None)) == whole  # old server
    # Over the link's cap: one upload, which the server refuses at once (413).
    assert choose(size, streams=4, chunk_size=chunk, offer=server(WITH_CONCAT, "1000")) == whole
    offered = choose(size, streams=4, chunk_size=chunk, offer=server(WITH_CONCAT, str(size)))
    assert offered == split(size, 4, chunk) and len(offered) == 4
    assert len(asked) == 4
    # A file that goes as one upload anyway does not cost a question to the server.
    assert choose(MiB, streams=4, chunk_size=chunk, offer=server(WITH_CONCAT)) == [Span(0, MiB)]
    assert choose(size, streams=1, chunk_size=chunk, offer=server(WITH_CONCAT)) == whole
    assert len(asked) == 4


@pytest.mark.parametrize(
    ("rtt", "far"), [(None, True), (0.0002, False), (0.0299, False), (0.030, True), (0.05, True)]
)
def test_auto_streams_go_parallel_only_to_a_far_gateway(rtt: float | None, far: bool) -> None:
    size, chunk = 200 * MiB, 16 * MiB
    offer = Offer.parse(WITH_CONCAT, None, rtt)
    assert offer.far is far
    spans = choose(size, streams=None, chunk_size=chunk, offer=lambda: offer)
    assert spans == (split(size, AUTO_STREAMS, chunk) if far else [Span(0, size)])
    # An explicit number of streams is taken whatever the distance.
    assert len(choose(size, streams=3, chunk_size=chunk, offer=lambda: offer)) == 3


def test_final_header_lists_the_partials_in_file_order() -> None:
    parts = [Part(f"{ENDPOINT}a", Span(0, 10)), Part(f"{ENDPOINT}b", Span(10, 15))]
    assert final_header(parts) == f"final;{ENDPOINT}a {ENDPOINT}b"


def test_state_entries_round_trip_and_reject_what_does_not_fit() -> None:
    parts = [Part(f"{ENDPOINT}a", Span(0, 10)), Part(f"{ENDPOINT}b", Span(10, 15))]
    entry = {**parts_entry(parts), "file": "/x", "size": 15, "at": 1.0}
    assert read_parts(entry, 15, ENDPOINT) == parts
    assert read_final(entry, ENDPOINT) is None
    joined = parts_entry(parts, f"{ENDPOINT}c")
    assert read_parts(joined, 15, ENDPOINT) == parts
    assert read_final(joined, ENDPOINT) == f"{ENDPOINT}c"
    # An entry of a single upload (as every earlier version wrote them) has no parts.
    assert read_parts({"url": f"{ENDPOINT}a", "size": 15}, 15, ENDPOINT) is None
    assert read_parts(entry, 16, ENDPOINT) is None  # another size
    assert read_parts(entry, 15, "http://gw/u/other/tus/") is None  # another link
    assert read_final(joined, "http://gw/u/other/tus/") is None
    gap = parts_entry([parts[0], Part(f"{ENDPOINT}b", Span(11, 15))])
    assert read_parts(gap, 15, ENDPOINT) is None
    assert read_parts({"parts": [{"url": f"{ENDPOINT}a"}] * 2}, 15, ENDPOINT) is None
    assert read_parts({"parts": "nonsense"}, 15, ENDPOINT) is None
