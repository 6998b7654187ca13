"""Sending one upload's bytes to a real gateway: streamed or in chunks, resuming after a
refusal from where the server says it stands, and stopping when told."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from gateway.client import send
from gateway.client.outcome import Failed
from gateway.client.progress import Meter
from gateway.client.reader import FileHash
from gateway.client.send import Sender, Stream
from gateway.client.streams import Span
from gateway.client.tus import TUS, Tus

MiB = 1024 * 1024


def a_file(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("chunk_size", "kernel"), [(0, True), (0, False), (MiB, False)])
def test_send_a_whole_file_and_check_it(
    tus: Tus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int, kernel: bool
) -> None:
    # A proxy in the environment takes the body through httpx instead of sendfile.
    monkeypatch.setattr(send, "direct", lambda url: kernel)
    path, digest = a_file(tmp_path, 3 * MiB + 17)
    size = path.stat().st_size
    url, _ = tus.create(size, path)
    whole = FileHash(path)
    stream = Stream(0, url, Span(0, size), Meter(None, "f", size), ahead=True)
    file_id = Sender(tus, chunk_size).send(path, stream, 0, whole)
    assert file_id
    assert whole.finish(size) == digest
    tus.check_receipt(file_id, size, digest)


@pytest.mark.parametrize("chunk_size", [0, MiB])
def test_a_stale_offset_resumes_where_the_server_stands(
    tus: Tus, tmp_path: Path, chunk_size: int
) -> None:
    path, digest = a_file(tmp_path, 2 * MiB + 5)
    size = path.stat().st_size
    url, _ = tus.create(size, path)
    head = path.read_bytes()[:MiB]
    headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert tus.client.patch(url, content=head, headers=headers).status_code == 204
    whole = FileHash(path)
    stream = Stream(0, url, Span(0, size), Meter(None, "f", size))
    # From 0 again (as after a lost answer): 409, then HEAD says 1 MiB and it goes on.
    file_id = Sender(tus, chunk_size).send(path, stream, 0, whole)
    assert file_id
    tus.check_receipt(file_id, size, digest)
    assert whole.finish(size) == digest


def test_a_stopped_stream_sends_nothing_more(tus: Tus, tmp_path: Path) -> None:
    path, _ = a_file(tmp_path, MiB)
    url, _ = tus.create(MiB, path)
    stop = threading.Event()
    stop.set()
    stream = Stream(0, url, Span(0, MiB), Meter(None, "f", MiB), stop)
    with pytest.raises(Failed) as caught:
        Sender(tus, 0).send(path, stream, 0, None)
    assert caught.value.reason == "stopped"
    assert tus.where(url, Span(0, MiB)) == (0, None)
