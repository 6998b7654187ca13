"""The header parsers the gateway acts on: strict numbers, one range, nothing negative or huge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http.headers import (
    ByteRange,
    ContentRange,
    Unsatisfiable,
    etag_matches,
    parse_content_range,
    parse_length,
    parse_range,
)

BIG = 2**63


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("0", 0), ("123", 123), (" 42 ", 42), ("9" * 19, int("9" * 19)),
     ("5, 5", 5), ("5,5,5", 5), ("007", 7)],
)  # fmt: skip
def test_parse_length_accepts(value: str | None, expected: int | None) -> None:
    assert parse_length(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "-1", "+1", "-0", "1e3", "0x10", "1.0", "1 2", "9" * 20, str(BIG * 10), "5, 6",
     "abc", "١٢", "５", "1_000", "\t", "nan"],
)  # fmt: skip
def test_parse_length_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_length(value)


def test_parse_length_message_names_the_header() -> None:
    with pytest.raises(ValueError, match="Upload-Length"):
        parse_length("-5", "Upload-Length")


@given(st.integers(min_value=0, max_value=10**19 - 1))
def test_parse_length_round_trips(n: int) -> None:
    assert parse_length(str(n)) == n


@given(st.text(max_size=25))
def test_parse_length_never_returns_negative(text: str) -> None:
    try:
        value = parse_length(text)
    except ValueError:
        return
    assert value is not None and 0 <= value < 10**19


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 100-199/*", ContentRange(100, 199, None)),
        ("  bytes 5-5/6 ", ContentRange(5, 5, 6)),
    ],
)
def test_parse_content_range_accepts(value: str, expected: ContentRange) -> None:
    assert parse_content_range(value) == expected
    assert expected.length == expected.end - expected.start + 1


@pytest.mark.parametrize(
    "value",
    ["", "bytes */100", "bytes 100-99/200", "bytes 0-100/100", "bytes -1-5/10",
     "bytes 0 - 5/10", "bytes=0-5/10", "bytes 0-5/10, bytes 6-9/10", "items 0-5/10",
     f"bytes 0-{'9' * 20}/*", f"bytes {'9' * 20}-{'9' * 20}/*", "bytes 0-5/-10",
     "bytes 0-5", "bytes 0x0-0x5/10", "BYTES 0-5/10"],
)  # fmt: skip
def test_parse_content_range_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_content_range(value)


@given(st.integers(0, 10**15), st.integers(0, 10**15), st.integers(0, 10**15) | st.none())
def test_parse_content_range_is_consistent(start: int, length: int, total: int | None) -> None:
    end = start + length
    text = f"bytes {start}-{end}/{'*' if total is None else total}"
    try:
        parsed = parse_content_range(text)
    except ValueError:
        assert total is not None and end >= total
        return
    assert (parsed.start, parsed.end, parsed.total) == (start, end, total)
    assert parsed.length == length + 1


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-99", 1000, ByteRange(0, 100)),
        ("bytes=0-0", 1000, ByteRange(0, 1)),
        ("bytes=500-", 1000, ByteRange(500, 1000)),
        ("bytes=999-", 1000, ByteRange(999, 1000)),
        ("bytes=-100", 1000, ByteRange(900, 1000)),
        ("bytes=-5000", 1000, ByteRange(0, 1000)),
        ("bytes=10-99999999", 1000, ByteRange(10, 1000)),
        (" bytes=1-2 ", 1000, ByteRange(1, 3)),
    ],
)
def test_parse_range(value: str, size: int, expected: ByteRange) -> None:
    assert parse_range(value, size) == expected


@pytest.mark.parametrize(
    "value",
    ["bytes=0-1,5-6", "items=0-1", "bytes=-", "bytes=5-2", "bytes= 0-1", "bytes=a-b",
     f"bytes={'9' * 20}-", "bytes=-1-2", "bytes=0-1 ,", "", "bytes"],
)  # fmt: skip
def test_parse_range_ignores_what_it_cannot_honour(value: str) -> None:
    assert parse_range(value, 1000) is None


@pytest.mark.parametrize(("value", "size"), [("bytes=1000-", 1000), ("bytes=5000-6000", 1000),
                                              ("bytes=-0", 1000), ("bytes=0-", 0)])  # fmt: skip
def test_parse_range_unsatisfiable(value: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(value, size)


@given(st.integers(0, 10**12), st.integers(0, 10**13), st.integers(0, 10**13) | st.none())
def test_parse_range_stays_inside_the_representation(size: int, a: int, b: int | None) -> None:
    text = f"bytes={a}-{'' if b is None else b}"
    try:
        wanted = parse_range(text, size)
    except Unsatisfiable:
        assert a >= size
        return
    if wanted is not None:
        assert 0 <= wanted.start < wanted.end <= size


def test_etag_matches_only_strong_exact() -> None:
    assert etag_matches('"abc"', '"abc"')
    assert etag_matches(' "abc" ', '"abc"')
    assert not etag_matches('W/"abc"', '"abc"')
    assert not etag_matches('"abd"', '"abc"')
    assert not etag_matches("Wed, 21 Oct 2015 07:28:00 GMT", '"abc"')
