"""PATCH bodies sent by the kernel: which URLs go direct, and a request against a real
gateway, including a refusal that comes before the body is sent."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from gateway.client.outcome import Failed
from gateway.client.streams import Span
from gateway.client.tus import TUS, Tus
from gateway.client.wire import FileConnection, direct

MiB = 1024 * 1024
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def test_direct_unless_the_environment_names_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert direct("http://gw.example/u/t/tus/x")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert direct("http://gw.example/u/t/tus/x")
    assert not direct("https://gw.example/u/t/tus/x")
    monkeypatch.setenv("NO_PROXY", "gw.example")
    assert direct("https://gw.example/u/t/tus/x")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    assert not direct("http://other.example/u/t/tus/x")


def test_patch_a_file_range_and_reuse_the_connection(tus: Tus, tmp_path: Path) -> None:
    data = os.urandom(20 * MiB + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    url, _ = tus.create(len(data), path)
    seen: list[int] = []
    with FileConnection() as connection, open(path, "rb") as body:
        half = 9 * MiB
        headers = {**OCTETS, "Upload-Offset": "0", "Content-Length": str(half)}
        first = connection.patch(url, headers, body, 0, half, seen.append, threading.Event())
        assert first.status_code == 204 and first.headers["upload-offset"] == str(half)
        assert seen[-1] == half and len(seen) >= 2  # told as it went, slice by slice
        opened = connection.conn
        rest = len(data) - half
        headers = {**OCTETS, "Upload-Offset": str(half), "Content-Length": str(rest)}
        second = connection.patch(url, headers, body, half, rest, seen.append, threading.Event())
        assert second.status_code == 204 and connection.conn is opened
    file_id = second.headers["x-gateway-file-id"]
    tus.check_receipt(file_id, len(data), hashlib.sha256(data).hexdigest())


def test_a_refusal_is_the_answer_and_stop_stops(tus: Tus, tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    url, _ = tus.create(len(data), path)
    with FileConnection() as connection, open(path, "rb") as body:
        wrong = {**OCTETS, "Upload-Offset": "5", "Content-Length": str(MiB)}
        answer = connection.patch(url, wrong, body, 0, MiB, lambda _: None, threading.Event())
        assert answer.status_code == 409
        stop = threading.Event()
        stop.set()
        headers = {**OCTETS, "Upload-Offset": "0", "Content-Length": str(MiB)}
        with pytest.raises(Failed) as caught:
            connection.patch(url, headers, body, 0, MiB, lambda _: None, stop)
        assert caught.value.reason == "stopped" and connection.conn is None
    assert tus.where(url, Span(0, len(data))) == (0, None)
