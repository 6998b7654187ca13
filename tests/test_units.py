"""Sizes and durations are parsed strictly: the forms the README shows, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.units import MAX_SIZE, format_duration, parse_duration, parse_size

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", MiB),
        ("20MiB", 20 * MiB),
        ("20mib", 20 * MiB),
        ("500MB", 500 * 1000**2),
        ("2GiB", 2 * GiB),
        ("1TB", 1000**4),
        ("5TiB", 5 * TiB),
        ("1.5GiB", GiB + GiB // 2),
        ("10 KiB", 10 * KiB),
        ("  7B ", 7),
        ("4k", 4 * KiB),
    ],
)
def test_parse_size_accepts_documented_forms(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "-1", "-5MiB", "+5MiB", "MiB", "5 MiB extra", "5XB", "1e6", "0x10", "5..2MiB",
     "5,000", "nan", "inf", "1" * 21, "١٢٣", "5 \nMiB", "9" * 20 + "TiB"],
)  # fmt: skip
def test_parse_size_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_size_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_size("99999999999PiB")
    assert parse_size(str(MAX_SIZE)) == MAX_SIZE
    with pytest.raises(ValueError):
        parse_size(str(MAX_SIZE + 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", 1800), ("12h", 43200), ("14d", 14 * 86400), ("1h30m", 5400), ("2w", 1209600),
     ("90", 90), ("45s", 45), ("2H", 7200)],
)  # fmt: skip
def test_parse_duration_accepts_documented_forms(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "0", "0s", "-5m", "-30", "5 m", "5y", "m", "1.5h", "14days", "1e3", "9" * 13, "PT5M",
     "1h-30m"],
)  # fmt: skip
def test_parse_duration_rejects_junk_negative_and_zero(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=MAX_SIZE))
def test_plain_byte_counts_round_trip(n: int) -> None:
    assert parse_size(str(n)) == n


@given(
    st.integers(min_value=0, max_value=100_000),
    st.sampled_from([("KiB", KiB), ("MiB", MiB), ("GiB", GiB), ("TiB", TiB),
                     ("KB", 1000), ("MB", 1000**2), ("GB", 1000**3), ("TB", 1000**4)]),
)  # fmt: skip
def test_sizes_with_units_scale_exactly(n: int, unit: tuple[str, int]) -> None:
    name, factor = unit
    assert parse_size(f"{n}{name}") == n * factor
    assert parse_size(f"{n}{name.lower()}") == n * factor


@given(st.integers(min_value=1, max_value=10**9))
def test_durations_round_trip_through_format(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.text(max_size=12))
def test_parse_size_never_fails_other_than_valueerror(text: str) -> None:
    try:
        value = parse_size(text)
    except ValueError:
        return
    assert 0 <= value <= MAX_SIZE


@given(st.text(max_size=12))
def test_parse_duration_never_fails_other_than_valueerror(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value > 0
