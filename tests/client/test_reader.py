"""Reading the file to send and hashing it: in order, across gaps, and a file that shrinks."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import pytest

from gateway.client.outcome import Failed
from gateway.client.reader import (
    STREAM_SLICE,
    ChunkReader,
    FileHash,
    sha256_of,
    slices,
)

MiB = 1024 * 1024


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * MiB + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_hash_in_order_with_repeats_and_gaps(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    whole = FileHash(path)
    whole.cover(0, data[:1000])
    whole.cover(500, data[500:2000])  # overlaps what was fed: only the new bytes count
    whole.cover(0, data[:100])  # already fed: skipped
    whole.cover(MiB, data[MiB : 2 * MiB])  # a gap (a resume): read from disk
    assert whole.done == 2 * MiB
    assert whole.finish(len(data)) == sha(data)  # the rest read from disk


def test_file_hash_of_a_shrunk_file_fails(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    whole = FileHash(path)
    path.write_bytes(data[:MiB])
    with pytest.raises(Failed) as caught:
        whole.finish(len(data))
    assert caught.value.reason == "file-changed"


def test_read_to_feeds_from_disk_and_stops(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    whole = FileHash(path)
    whole.cover(0, data[:100])
    whole.read_to(2 * MiB, threading.Event())  # from where it stands
    whole.read_to(MiB, threading.Event())  # behind it: nothing to do
    assert whole.done == 2 * MiB
    whole.cover(2 * MiB, data[2 * MiB : 2 * MiB + 10])  # feeding goes on after it
    assert whole.finish(len(data)) == sha(data)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Failed) as caught:
        FileHash(path).read_to(len(data), stop)
    assert caught.value.reason == "stopped"


def test_sha256_of_reads_a_prefix_and_stops(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    stop = threading.Event()
    assert sha256_of(path, len(data), stop) == sha(data)
    assert sha256_of(path, 1000, stop) == sha(data[:1000])
    with pytest.raises(Failed) as caught:
        sha256_of(path, len(data) + 1, stop)
    assert caught.value.reason == "file-changed"
    stop.set()
    with pytest.raises(Failed) as stopped:
        sha256_of(path, len(data), stop)
    assert stopped.value.reason == "stopped"


def test_slices_cover_a_range(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    got = list(slices(path, 100, len(data), threading.Event()))
    assert b"".join(got) == data[100:]
    assert max(len(piece) for piece in got) == STREAM_SLICE
    with pytest.raises(Failed):
        list(slices(path, 0, len(data) + 10, threading.Event()))


@pytest.mark.parametrize("ahead", [False, True])
def test_chunk_reader(data_file: tuple[Path, bytes], ahead: bool) -> None:
    path, data = data_file
    with ChunkReader(path, len(data), MiB, ahead=ahead) as reader:
        offsets = [0, MiB, 2 * MiB, 3 * MiB, MiB]  # in order, then back (a resume)
        for offset in offsets:
            chunk = reader.get(offset)
            expected = data[offset : offset + MiB]
            assert chunk.offset == offset and chunk.data == expected
            digest = base64.b64encode(hashlib.sha256(expected).digest()).decode()
            assert chunk.checksum == digest
