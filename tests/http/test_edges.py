"""Edges of the upload surface on SeaweedFS: slow bodies, repeated headers, metadata caps.

One gateway process for the module, on the session's SeaweedFS, with the
defaults for what this is about: 8 uploads at once per link, a 30 s wait for
one, and a minimum body rate of 1 KiB/s over 10 s. Slow clients are raw
sockets; the normal upload beside them is curl.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.http import tus_headers
from gateway.links import Links
from tests.http.rawhttp import RawResponse, connect, exchange, read_response, request_head
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer
from tests.tus.support import require_tool

KiB = 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def gw(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("edges")
    env = gateway_env(
        work,
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=seaweed.make_bucket(),
        GATEWAY_ATTACHMENT_MAX="1MiB",
        **seaweed.env(),
    )
    proc = start_gateway(work, env)
    yield proc
    proc.kill()


def _ticket() -> str:
    return str(int.from_bytes(os.urandom(4), "big"))


def _files(link: str) -> list[dict[str, object]]:
    response = httpx.get(f"{link}/files", timeout=30)
    response.raise_for_status()
    files: list[dict[str, object]] = response.json()["files"]
    return files


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- slow bodies ------------------------------------------------------------------------


@dataclass
class Trickle:
    """A PUT whose body arrives at one byte a second after a 512-byte start."""

    url: str
    data: bytes = field(default_factory=lambda: os.urandom(64 * KiB))
    sent: int = 0
    response: RawResponse | None = None
    ended: bool = False

    def run(self, stop: threading.Event) -> None:
        with connect(self.url, timeout=30) as sock:
            head = request_head("PUT", self.url, [("Content-Length", str(len(self.data)))])
            sock.sendall(head + self.data[:512])
            self.sent = 512
            while not stop.is_set() and self.sent < len(self.data):
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    break
                try:
                    sock.sendall(self.data[self.sent : self.sent + 1])
                except OSError:
                    break
                self.sent += 1
            if not stop.is_set():
                try:
                    self.response = read_response(sock, timeout=30)
                except OSError:
                    self.response = None
                self.ended = True


def _curl_put(path: Path, url: str) -> tuple[int, str]:
    done = subprocess.run(
        [require_tool("curl"), "-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}",
         "-T", str(path), url],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


def test_slow_bodies_are_cut_and_a_normal_upload_beside_them_goes_through(
    gw: GatewayProcess, tmp_path: Path
) -> None:
    link = gw.link(_ticket())
    slow = [Trickle(f"{link}/slow{i}.bin") for i in range(25)]
    stop = threading.Event()
    threads = [threading.Thread(target=t.run, args=(stop,), daemon=True) for t in slow]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)  # every slot of the link is held by a slow body by now
        path = tmp_path / "normal.bin"
        data = os.urandom(1024 * KiB)
        path.write_bytes(data)
        status, body = _curl_put(path, f"{link}/")
        assert status == 201, body
        assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
        for thread in threads:
            thread.join(120)
        assert all(t.ended for t in slow)
    finally:
        stop.set()
    for t in slow:
        # Cut: an answer of 408 (or a hang-up) long before the whole body was sent.
        assert t.response is None or t.response.status == 408, t.response
        assert t.sent < len(t.data)
        # What arrived is kept: HEAD tells how much, and the rest completes the file.
        head = httpx.head(t.url, timeout=30)
        assert head.status_code == 200
        offset = int(head.headers["upload-offset"])
        assert 512 <= offset <= t.sent
        total = len(t.data)
        rest = httpx.put(
            t.url,
            content=t.data[offset:],
            headers={"Content-Range": f"bytes {offset}-{total - 1}/{total}"},
            timeout=30,
        )
        assert rest.status_code == 201, rest.text
        assert rest.json()["sha256"] == hashlib.sha256(t.data).hexdigest()


def test_request_heads_that_never_end_hold_no_upload_slot(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    socks: list[socket.socket] = []
    try:
        for i in range(12):  # more than the link's 8 slots
            sock = connect(f"{link}/h{i}.bin", timeout=30)
            path = urlsplit(f"{link}/h{i}.bin").path
            head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
            sock.sendall(head.encode())  # ... and the head never ends
            socks.append(sock)
        response = httpx.put(f"{link}/normal.bin", content=b"x" * 1000, timeout=30)
        assert response.status_code == 201, response.text
        assert [f["filename"] for f in _files(link)] == ["normal.bin"]
    finally:
        for sock in socks:
            sock.close()


# -- repeated singleton headers ------------------------------------------------------------

TWICE = {
    "Content-Length": ("10", "10"),
    "Content-Range": ("bytes 0-9/10", "bytes 5-9/10"),
    "Range": ("bytes=0-1", "bytes=2-3"),
    "Tus-Resumable": ("1.0.0", "1.0.0"),
    "Upload-Checksum": (
        "sha256 " + _b64(hashlib.sha256(b"0123456789").digest()),
        "sha1 " + _b64(hashlib.sha1(b"0123456789").digest()),
    ),
    "Upload-Concat": ("partial", "partial"),
    "Upload-Length": ("10", "5"),
    "Upload-Metadata": ("filename " + _b64(b"a.bin"), "filename " + _b64(b"b.bin")),
    "Upload-Offset": ("0", "5"),
}
ROUTES = ["tus-create", "tus-patch", "tus-head", "put", "form", "download"]
FORM = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n\r\n'
    b"0123456789\r\n--b--\r\n"
)


@dataclass
class Target:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    tus: bool


def _target(gw: GatewayProcess, link: str, route: str) -> Target:
    octets = {**TUS, "Content-Type": "application/offset+octet-stream"}
    if route == "tus-create":
        return Target("POST", f"{link}/tus/", {**TUS, "Upload-Length": "10"}, b"", True)
    if route in ("tus-patch", "tus-head"):
        created = httpx.post(f"{link}/tus/", headers={**TUS, "Upload-Length": "10"}, timeout=30)
        assert created.status_code == 201, created.text
        url = created.headers["location"]
        if route == "tus-head":
            return Target("HEAD", url, dict(TUS), b"", True)
        return Target("PATCH", url, {**octets, "Upload-Offset": "0"}, b"0123456789", True)
    if route == "put":
        return Target("PUT", f"{link}/f.bin", {}, b"0123456789", False)
    if route == "form":
        return Target(
            "POST", link, {"Content-Type": "multipart/form-data; boundary=b"}, FORM, False
        )
    put = httpx.put(f"{link}/d.bin", content=b"0123456789", timeout=30)
    assert put.status_code == 201, put.text
    url, _ = Links(gw.settings).download_url(put.json()["file_id"], "d.bin")
    return Target("GET", url, {}, b"", False)


@pytest.mark.parametrize("name", sorted(TWICE))
@pytest.mark.parametrize("route", ROUTES)
def test_a_repeated_singleton_header_is_400(gw: GatewayProcess, route: str, name: str) -> None:
    link = gw.link(_ticket())
    target = _target(gw, link, route)
    before = _files(link)
    headers = [(k, v) for k, v in target.headers.items() if k.lower() != name.lower()]
    if name != "Content-Length":
        headers.append(("Content-Length", str(len(target.body))))
    first, second = TWICE[name]
    headers += [(name, first), (name, second), ("Connection", "close")]
    response = exchange(target.url, target.method, headers, target.body, timeout=30)
    assert response is not None and response.status == 400, response
    if target.method != "HEAD":
        error = response.json()["error"]
        assert error["code"] == "bad_request"
        assert name in error["message"]
    if target.tus and name != "Content-Length":
        # (The HTTP parser refuses a repeated Content-Length before any route is chosen.)
        assert response.header("Tus-Resumable") == "1.0.0"
        assert response.header("Access-Control-Expose-Headers")
    assert response.header("X-Content-Type-Options") == "nosniff"
    # Nothing was written or created.
    assert _files(link) == before
    if route == "tus-patch":
        head = httpx.head(target.url, headers=TUS, timeout=30)
        assert head.headers["upload-offset"] == "0"


def test_each_singleton_header_once_is_fine(gw: GatewayProcess) -> None:
    """The matrix's requests, without the repetition, are answered normally."""
    link = gw.link(_ticket())
    patch = _target(gw, link, "tus-patch")
    response = exchange(
        patch.url,
        "PATCH",
        [*patch.headers.items(), ("Content-Length", "10"), ("Connection", "close")],
        patch.body,
    )
    assert response is not None and response.status == 204
    download = _target(gw, link, "download")
    ranged = httpx.get(download.url, headers={"Range": "bytes=2-3"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == b"23"


# -- Upload-Metadata caps ------------------------------------------------------------------


def _metadata_of_length(total: int) -> str:
    """A well-formed Upload-Metadata value of exactly ``total`` characters."""
    pairs: list[str] = []
    length = -1  # no comma before the first pair
    while total - length > 2000:
        pair = f"k{len(pairs)} " + _b64(b"m" * 1200)
        pairs.append(pair)
        length += len(pair) + 1
    rest = total - length - 1  # characters for the last pair, after its comma
    key = (rest - 1) % 4 or 4
    value = rest - 1 - key
    assert value > 0
    pairs.append("z" * key + " " + _b64(b"y" * (value // 4 * 3)))
    header = ",".join(pairs)
    assert len(header) == total
    return header


def _create(link: str, metadata: str) -> httpx.Response:
    return httpx.post(
        f"{link}/tus/", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata}
    )


def test_metadata_length_cap_at_the_boundary(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    limit = tus_headers.MAX_METADATA_LENGTH
    assert limit == 4096
    fits = _metadata_of_length(limit)
    created = _create(link, fits)
    assert created.status_code == 201, created.text
    head = httpx.head(created.headers["location"], headers=TUS)
    assert head.headers["upload-metadata"] == fits
    over = _create(link, _metadata_of_length(limit + 1))
    assert over.status_code == 400
    error = over.json()["error"]
    assert error["code"] == "bad_request" and str(limit) in error["message"]
    assert over.headers["tus-resumable"] == "1.0.0"


def test_metadata_key_count_and_value_caps_at_the_boundary(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    most = tus_headers.MAX_METADATA_PAIRS
    keys = [f"k{i}" for i in range(most + 1)]
    assert _create(link, ",".join(keys[:most])).status_code == 201
    too_many = _create(link, ",".join(keys))
    assert too_many.status_code == 400
    assert str(most) in too_many.json()["error"]["message"]
    biggest = tus_headers.MAX_VALUE_LENGTH
    assert _create(link, "note " + _b64(b"n" * biggest)).status_code == 201
    too_big = _create(link, "note " + _b64(b"n" * (biggest + 1)))
    assert too_big.status_code == 400
    assert str(biggest) in too_big.json()["error"]["message"]
    assert _files(link) == []
