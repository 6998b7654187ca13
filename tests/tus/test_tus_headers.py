"""The pure tus header parsers: strict, and never anything but a value or ValueError."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.http import tus_headers
from gateway.http.tus_headers import UnknownAlgorithm

keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=20,
)
metadata = st.dictionaries(keys, st.binary(max_size=40), max_size=10)


@given(metadata)
def test_metadata_round_trips(data: dict[str, bytes]) -> None:
    assert tus_headers.parse_metadata(tus_headers.format_metadata(data)) == data


@given(st.text(max_size=200))
def test_metadata_parser_never_crashes(text: str) -> None:
    try:
        result = tus_headers.parse_metadata(text)
    except ValueError:
        return
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in result.items())


def test_metadata_examples() -> None:
    header = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    assert tus_headers.parse_metadata(header) == {
        "filename": b"world_domination_plan.pdf",
        "is_confidential": b"",
    }
    assert tus_headers.parse_metadata("a YQ==, b Yg==") == {"a": b"a", "b": b"b"}
    assert tus_headers.parse_metadata("") == {}


@pytest.mark.parametrize(
    "bad",
    [
        "filename a",  # not base64 (length)
        "filename YQ",  # missing padding
        "filename Y!==",  # bad alphabet
        "filename YQ==,filename Yg==",  # duplicate key
        "filename YQ==,,type Yg==",  # empty pair
        "file name YQ==",  # space in key
        "filename  YQ==",  # two spaces
        "filename YQ== extra",
        "fïlename YQ==",  # non-ASCII key
        ",".join(f"k{i}" for i in range(100)),  # too many pairs
    ],
)
def test_metadata_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        tus_headers.parse_metadata(bad)


@given(st.sampled_from(sorted(tus_headers.CHECKSUM_ALGORITHMS)), st.binary(max_size=100))
def test_checksum_parses_real_digests(algorithm: str, data: bytes) -> None:
    digest = hashlib.new(algorithm, data).digest()
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    assert tus_headers.parse_checksum(header) == (algorithm, digest)


@given(st.text(max_size=100))
def test_checksum_parser_never_crashes(text: str) -> None:
    try:
        algorithm, digest = tus_headers.parse_checksum(text)
    except ValueError:
        return
    assert len(digest) == tus_headers.CHECKSUM_ALGORITHMS[algorithm]


def test_checksum_errors() -> None:
    with pytest.raises(UnknownAlgorithm):
        tus_headers.parse_checksum("crc32 AAAAAA==")
    with pytest.raises(ValueError) as info:
        tus_headers.parse_checksum("sha1 YQ==")  # digest too short
    assert not isinstance(info.value, UnknownAlgorithm)
    for bad in ("sha1", "sha1 ", " sha1 YQ==", "sha1 !!!!"):
        with pytest.raises(ValueError):
            tus_headers.parse_checksum(bad)


@given(st.integers(min_value=0, max_value=10**19 - 1))
def test_numbers_round_trip(n: int) -> None:
    assert tus_headers.parse_number(str(n), "Upload-Length") == n


@pytest.mark.parametrize("bad", ["", "-1", "+1", " 1", "1 ", "1e3", "0x10", "١", "1" * 20])
def test_numbers_reject(bad: str) -> None:
    with pytest.raises(ValueError):
        tus_headers.parse_number(bad, "Upload-Length")


def test_defer_length_and_date() -> None:
    assert tus_headers.parse_defer_length("1")
    with pytest.raises(ValueError):
        tus_headers.parse_defer_length("0")
    assert tus_headers.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_concat_partial_and_final() -> None:
    assert tus_headers.parse_concat("partial") is None
    ids = tus_headers.parse_concat(
        "final;http://gw.example/u/tok/tus/abcdefabcdefabcdef /u/tok/tus/0123456789abcdef0123"
    )
    assert ids == ["abcdefabcdefabcdef", "0123456789abcdef0123"]
    # Extra spaces between URLs are tolerated; a query string is not part of the id.
    assert tus_headers.parse_concat("final;/u/t/tus/aaaa  /u/t/tus/bbbb?x=1") == ["aaaa", "bbbb"]


@pytest.mark.parametrize(
    "bad",
    ["", "Partial", "final", "final;", "final; ", "whole;/u/t/tus/aaaa", "final;/files/aaaa",
     "final;/u/t/tus/", "final;/u/t/tus/aaaa/extra", " ".join(["final;"] + ["/tus/a"] * 101)],
)  # fmt: skip
def test_concat_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        tus_headers.parse_concat(bad)


def test_metadata_caps_at_their_boundaries() -> None:
    most = tus_headers.MAX_METADATA_PAIRS
    keys = [f"k{i}" for i in range(most + 1)]
    assert len(tus_headers.parse_metadata(",".join(keys[:most]))) == most
    with pytest.raises(ValueError, match=str(most)):
        tus_headers.parse_metadata(",".join(keys))
    biggest = tus_headers.MAX_VALUE_LENGTH
    encoded = base64.b64encode(b"v" * biggest).decode()
    assert tus_headers.parse_metadata(f"k {encoded}") == {"k": b"v" * biggest}
    with pytest.raises(ValueError, match=str(biggest)):
        tus_headers.parse_metadata("k " + base64.b64encode(b"v" * (biggest + 1)).decode())
    longest = tus_headers.MAX_METADATA_LENGTH
    padded = "k " + encoded + "," + "x" * 100 + ","
    while len(padded) + 101 <= longest:
        padded += f"{len(padded):04d}" + "x" * 96 + ","
    fits = padded + "y" * (longest - len(padded))
    assert len(fits) == longest
    assert len(tus_headers.parse_metadata(fits)) > 1
    with pytest.raises(ValueError, match=str(longest)):
        tus_headers.parse_metadata(fits + "y")
