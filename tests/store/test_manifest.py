"""The file store's manifest format and its range arithmetic (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store.manifest import MAGIC, Manifest

PARTS_ID = "0123456789abcdef" * 2


def make(*sizes: int) -> Manifest:
    parts = tuple((f"{n:05d}", size) for n, size in enumerate(sizes, start=1))
    return Manifest(parts_id=PARTS_ID, parts=parts, etag=f"{PARTS_ID}-{len(sizes)}")


def test_round_trip() -> None:
    manifest = make(5, 7, 1)
    data = manifest.encode()
    assert data.startswith(MAGIC)
    assert Manifest.decode(data) == manifest
    assert manifest.size == 13


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_empty_or_odd_part_sizes_are_refused(size: object) -> None:
    with pytest.raises(ValueError):
        Manifest(parts_id=PARTS_ID, parts=(("00001", size),), etag="e")  # type: ignore[arg-type]
    body = {"etag": "e", "dir": PARTS_ID, "parts": [["00001", size]]}
    with pytest.raises(ValueError):
        Manifest.decode(MAGIC + json.dumps(body).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"etag": "e", "dir": "../../etc", "parts": []}).encode(),
        json.dumps({"etag": "e", "dir": PARTS_ID, "parts": [["../x", 1]]}).encode(),
        json.dumps({"etag": "e", "dir": PARTS_ID, "parts": [["00001", 1], ["00001", 2]]}).encode(),
        json.dumps({"etag": "", "dir": PARTS_ID, "parts": []}).encode(),
        json.dumps({"etag": "e", "dir": PARTS_ID, "parts": [["00001"]]}).encode(),
        json.dumps({"dir": PARTS_ID, "parts": []}).encode(),
    ],
)
def test_malformed_manifests_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        Manifest.decode(MAGIC + body)


def test_data_without_the_magic_line_is_not_a_manifest() -> None:
    with pytest.raises(ValueError, match="manifest line"):
        Manifest.decode(make(3).encode()[1:])


def test_spans_cross_part_boundaries() -> None:
    manifest = make(4, 4, 2)
    assert [(s.name, s.offset, s.length) for s in manifest.spans(3, 9)] == [
        ("00001", 3, 1),
        ("00002", 0, 4),
        ("00003", 0, 1),
    ]
    assert [(s.name, s.offset, s.length) for s in manifest.spans(4, 8)] == [("00002", 0, 4)]
    assert list(manifest.spans(10, None)) == []
    assert list(manifest.spans(5, 5)) == []
    with pytest.raises(ValueError):
        list(manifest.spans(5, 4))
    with pytest.raises(ValueError):
        list(manifest.spans(-1, None))


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=20), min_size=0, max_size=6),
    start=st.integers(min_value=0, max_value=130),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=130)),
)
def test_spans_select_exactly_the_range(sizes: list[int], start: int, length: int | None) -> None:
    manifest = make(*sizes)
    # Give every byte a distinct value, then read the spans back out of the parts.
    content = list(range(manifest.size))
    parts: dict[str, list[int]] = {}
    base = 0
    for name, size in manifest.parts:
        parts[name] = content[base : base + size]
        base += size
    end = None if length is None else start + length
    got: list[int] = []
    for span in manifest.spans(start, end):
        assert span.length > 0
        got += parts[span.name][span.offset : span.offset + span.length]
    assert got == content[start:end]
