"""The download client's pure parts: piece plans, the state file, names and ETags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.client.download import name_from, sha256_of_etag
from gateway.client.pieces import (
    MAX_PIECE,
    MIN_PIECE,
    PieceState,
    load_state,
    piece_size_for,
    save_state,
    spans,
)
from gateway.filenames import unique_names

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "connections", "expected"),
    [
        (0, 4, MIN_PIECE),
        (10, 4, MIN_PIECE),
        (40 * MiB, 4, 3 * MiB),
        (40 * MiB, 2, 5 * MiB),
        (1024 * MiB, 4, MAX_PIECE),
        (5 * 1024 * MiB, 16, MAX_PIECE),
    ],
)
def test_piece_size(size: int, connections: int, expected: int) -> None:
    assert piece_size_for(size, connections) == expected


def test_spans_cover_the_file_once() -> None:
    assert spans(0, MiB) == [(0, 0)]
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    plan = spans(100 * MiB + 1, 3 * MiB)
    assert plan[0][0] == 0 and plan[-1][1] == 100 * MiB + 1
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:], strict=False))
    with pytest.raises(ValueError):
        spans(10, 0)


def test_state_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "x.part.json"
    state = PieceState("ab" * 32, 10, 4, {0: "h0", 2: "h2"})
    save_state(path, state)
    loaded = load_state(path)
    assert loaded == state and loaded.matches("ab" * 32, 10)
    assert not loaded.matches("ab" * 32, 11)
    for bad in ("{", "[]", '{"version": 2}', '{"version": 1, "sha256": "x", "size": -1}'):
        path.write_text(bad)
        assert load_state(path) is None
    path.write_text('{"version":1,"sha256":"s","size":10,"piece_size":4,"done":{"0":"a","9":"b"}}')
    assert load_state(path) == PieceState("s", 10, 4, {0: "a"})  # pieces past the end dropped
    assert load_state(tmp_path / "absent.json") is None


def test_names_from_content_disposition() -> None:
    url = "http://gw/files/TOKEN/fallback%20name.bin"
    assert name_from('attachment; filename="plain.txt"', url) == "plain.txt"
    both = "attachment; filename=\"R_sum_.bin\"; filename*=UTF-8''R%C3%A9sum%C3%A9.bin"
    assert name_from(both, url) == "Résumé.bin"
    assert name_from(None, url) == "fallback name.bin"
    assert name_from('attachment; filename="../../etc/passwd"', url) == "passwd"
    assert name_from('attachment; filename=".."', "http://gw/files/T/..") == "download.bin"


def test_etags() -> None:
    digest = "0f" * 32
    assert sha256_of_etag(f'"{digest}"') == digest
    assert sha256_of_etag(f'"{digest.upper()}"') == digest
    assert sha256_of_etag(f'W/"{digest}"') is None
    assert sha256_of_etag('"abc"') is None
    assert sha256_of_etag(None) is None


def test_unique_names() -> None:
    assert unique_names(["a.txt", "a.txt", "b", "b", "a.txt"]) == [
        "a.txt", "a (2).txt", "b", "b (2)", "a (3).txt",
    ]  # fmt: skip
