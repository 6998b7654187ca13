"""The hostile-input matrix: one test per thing an attacker or a broken client tries.

A real gateway process on the file store with a 2 s idle timeout, at most two
uploads at once per link and a 1 s wait for one, so the slow and crowding cases
stay quick. Lying and
slow clients are raw sockets; well-formed requests go through httpx or curl.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from gateway.links import Links
from tests.http.rawhttp import (
    connect,
    exchange,
    metric,
    read_response,
    request_head,
    send_and_close,
    wait_for,
)
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("hostile")
    env = gateway_env(
        work,
        GATEWAY_ATTACHMENT_MAX="1MiB",
        GATEWAY_IDLE_TIMEOUT="2s",
        GATEWAY_LINK_CONCURRENCY="2",
        GATEWAY_BUSY_WAIT="1s",
    )
    proc = start_gateway(work, env)
    yield proc
    proc.kill()


def _ticket() -> str:
    return str(int.from_bytes(os.urandom(4), "big"))


def _files(link: str) -> list[dict[str, object]]:
    response = httpx.get(f"{link}/files")
    response.raise_for_status()
    files: list[dict[str, object]] = response.json()["files"]
    return files


def _token(link: str) -> str:
    return link.rsplit("/u/", 1)[1]


def _settled(gw: GatewayProcess) -> bool:
    """No upload running and no part buffer held."""
    return (
        metric(gw.url, "gateway_uploads_in_flight") == 0
        and metric(gw.url, "gateway_buffer_bytes_in_use") == 0
    )


def _broken_put(link: str, name: str, total: int, sent: int) -> None:
    send_and_close(
        f"{link}/{name}", "PUT", [("Content-Length", str(total))], os.urandom(sent), linger=0.3
    )


def _offset(url: str) -> int:
    return int(httpx.head(url).headers.get("upload-offset", "0"))


# -- links -------------------------------------------------------------------------


def test_forged_link(gw: GatewayProcess) -> None:
    forged = base64.urlsafe_b64encode(os.urandom(80)).rstrip(b"=").decode()
    response = httpx.put(f"{gw.url}/u/{forged}/x.bin", content=b"data")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "link_invalid"


def test_truncated_link(gw: GatewayProcess) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    response = httpx.put(f"{link[:-5]}/x.bin", content=b"data")
    assert response.status_code == 404
    assert ticket not in response.text
    assert _files(link) == []


def test_expired_link(gw: GatewayProcess) -> None:
    ticket = _ticket()
    url = Links(gw.settings, clock=lambda: time.time() - 7200).mint(ticket, expires_in=60).url
    response = httpx.put(f"{url}/x.bin", content=b"data")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "link_expired"
    assert ticket not in response.text


def test_link_signed_with_another_secret(gw: GatewayProcess) -> None:
    other = Links(gw.settings.with_(secret=os.urandom(40))).mint(_ticket()).url
    assert httpx.put(f"{other}/x.bin", content=b"data").status_code == 404


def test_put_resume_replayed_with_another_tickets_link(gw: GatewayProcess) -> None:
    mine, theirs = gw.link(_ticket()), gw.link(_ticket())
    data_len = 3 * MiB
    _broken_put(mine, "shared.bin", data_len, MiB)
    assert wait_for(lambda: _offset(f"{mine}/shared.bin") > 0)
    offset = _offset(f"{mine}/shared.bin")
    # The other ticket's link sees no unfinished upload under the same name...
    head = httpx.head(f"{theirs}/shared.bin")
    assert head.status_code == 404 and head.headers["upload-offset"] == "0"
    # ...and cannot continue it.
    rest = os.urandom(data_len - offset)
    response = httpx.put(
        f"{theirs}/shared.bin",
        content=rest,
        headers={"Content-Range": f"bytes {offset}-{data_len - 1}/{data_len}"},
    )
    assert response.status_code == 409
    assert _offset(f"{mine}/shared.bin") == offset
    assert _files(mine) == [] and _files(theirs) == []


def test_tus_upload_replayed_with_another_tickets_link(gw: GatewayProcess) -> None:
    mine, theirs = gw.link(_ticket()), gw.link(_ticket())
    created = httpx.post(
        f"{mine}/tus/",
        headers={**TUS, "Upload-Length": "10",
                 "Upload-Metadata": "filename " + base64.b64encode(b"t.bin").decode()},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    upload_id = created.headers["location"].rstrip("/").rsplit("/", 1)[1]
    stolen = f"{theirs}/tus/{upload_id}"
    patch_headers = {**TUS, "Upload-Offset": "0",
                     "Content-Type": "application/offset+octet-stream"}  # fmt: skip
    assert httpx.head(stolen, headers=TUS).status_code == 404
    assert httpx.patch(stolen, content=b"0123456789", headers=patch_headers).status_code == 404
    assert httpx.delete(stolen, headers=TUS).status_code == 404
    own = httpx.head(f"{mine}/tus/{upload_id}", headers=TUS)
    assert own.status_code == 200 and own.headers["upload-offset"] == "0"


def test_upload_token_used_as_download_token(gw: GatewayProcess) -> None:
    response = httpx.get(f"{gw.url}/files/{_token(gw.link(_ticket()))}/x.bin")
    assert response.status_code == 403


# -- names -------------------------------------------------------------------------


def _tree(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2F..%2Fescape-put.txt", "..%5C..%5Cescape-put.txt", "a/b/../../../../escape-put.txt",
     "%2Fetc%2Fescape-put.txt"],
)  # fmt: skip
def test_path_tricks_in_put_names(gw: GatewayProcess, name: str) -> None:
    workdir = gw.workdir
    before = {p for p in _tree(workdir.parent) if "escape" in p.name}
    response = httpx.put(f"{gw.link(_ticket())}/{name}", content=b"payload")
    assert response.status_code in (201, 404), response.text
    if response.status_code == 201:
        assert response.json()["filename"] == "escape-put.txt"
    data_dir = Path(gw.env["GATEWAY_DATA_DIR"]).resolve()
    for path in _tree(workdir.parent):
        assert "escape" not in path.name or path in before
    for path in _tree(data_dir):
        assert path.resolve().is_relative_to(data_dir)
        assert "escape" not in str(path)


def test_path_tricks_in_form_names(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    files = [
        ("file", ("../../../escape-form.txt", b"a")),
        ("file", ("C:\\Windows\\escape-form2.exe", b"b")),
        ("file", ("/etc/passwd", b"c")),
    ]
    response = httpx.post(link, files=files)
    assert response.status_code == 201, response.text
    names = [r["filename"] for r in response.json()["files"]]
    assert names == ["escape-form.txt", "escape-form2.exe", "passwd"]
    data_dir = Path(gw.env["GATEWAY_DATA_DIR"])
    assert not [p for p in _tree(gw.workdir.parent) if "escape-form" in p.name]
    assert not [p for p in _tree(data_dir) if p.name == "passwd"]


@pytest.mark.parametrize(
    "raw",
    ["nul%00byte.txt", "new%0Aline.txt", "esc%1B%5B31m.txt", "bidi%E2%80%AEtxt.exe",
     "del%7F.txt", "cr%0D%0AX-Injected%3A%201.txt"],
)  # fmt: skip
def test_control_characters_in_names(gw: GatewayProcess, raw: str) -> None:
    link = gw.link(_ticket())
    response = httpx.put(f"{link}/{raw}", content=b"x")
    # Refused (a line break in a path matches no route), or stored under a cleaned name.
    assert response.status_code in (201, 400, 404), response.text
    assert "x-injected" not in response.headers
    if response.status_code == 201:
        name = response.json()["filename"]
        assert not any(unicodedata.category(c)[0] == "C" for c in name)
        assert name
    else:
        assert _files(link) == []


def test_windows_reserved_and_overlong_names(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    reserved = httpx.put(f"{link}/CON.txt", content=b"x")
    assert reserved.status_code == 201 and reserved.json()["filename"] == "_CON.txt"
    long = httpx.put(f"{link}/{quote('日' * 200)}.log", content=b"x")
    assert long.status_code == 201
    assert len(long.json()["filename"].encode()) <= 255
    assert long.json()["filename"].endswith(".log")
    huge = httpx.put(f"{link}/{'a' * 3000}.log", content=b"x")
    assert huge.status_code in (400, 414, 431)


# -- lengths and headers -----------------------------------------------------------


def test_lying_content_length_shorter_body_then_close(gw: GatewayProcess) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    _broken_put(link, "short.bin", 100_000, 5_000)
    assert wait_for(lambda: _settled(gw))
    assert _files(link) == []
    assert ticket_comments(gw, ticket) == []


def test_body_longer_than_declared(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    body = b"0123456789"
    extra = b"EXTRA BYTES THAT ARE NOT PART OF THE FILE"
    response = exchange(
        f"{link}/ten.bin", "PUT", [("Content-Length", "10"), ("Connection", "close")],
        body + extra,
    )  # fmt: skip
    assert response is not None and response.status == 201
    receipt = response.json()
    assert receipt["size"] == 10
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()


def test_content_range_inconsistent_with_content_length(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    response = httpx.put(
        f"{link}/cr.bin", content=b"x" * 50, headers={"Content-Range": "bytes 0-99/100"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_range"
    assert _files(link) == []


@pytest.mark.parametrize(
    "value",
    ["bytes 0-100/100", "bytes -5-10/100", "bytes 10-5/100", f"bytes 0-{'9' * 30}/*",
     "bytes 0-9/-10", "bytes=0-9/10", "garbage"],
)  # fmt: skip
def test_bad_content_range(gw: GatewayProcess, value: str) -> None:
    link = gw.link(_ticket())
    response = httpx.put(f"{link}/cr.bin", content=b"x" * 10, headers={"Content-Range": value})
    assert response.status_code == 400, value
    assert _files(link) == []


@pytest.mark.parametrize("value", ["-5", "-1", "1e3", "0x10", "+10", "99999999999999999999999"])
def test_bad_content_length_numbers(gw: GatewayProcess, value: str) -> None:
    link = gw.link(_ticket())
    response = exchange(
        f"{link}/n.bin", "PUT", [("Content-Length", value), ("Connection", "close")], b"x" * 10,
        half_close=True,
    )  # fmt: skip
    assert response is None or response.status == 400, value
    assert _files(link) == []


def test_huge_content_length_over_the_cap(gw: GatewayProcess) -> None:
    link = gw.link(_ticket(), max_size=MiB)
    response = exchange(
        f"{link}/h.bin", "PUT", [("Content-Length", str(10**18)), ("Connection", "close")],
        b"x" * 100,
    )  # fmt: skip
    assert response is not None and response.status == 413
    assert _files(link) == []


def test_huge_numbers_in_tus_headers(gw: GatewayProcess) -> None:
    link = gw.link(_ticket(), max_size=MiB)
    for value in ("-1", "9" * 30, "1e9", str(MiB + 1)):
        response = httpx.post(f"{link}/tus/", headers={**TUS, "Upload-Length": value})
        assert response.status_code in (400, 413), value
    over = httpx.post(f"{link}/tus/", headers={**TUS, "Upload-Length": str(MiB + 1)})
    assert over.status_code == 413


def test_malformed_upload_metadata(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    for value in (
        "filename !!!not-base64!!!",
        "a b c",
        "filename eA==,filename eQ==",
        "fi\x01le eA==",
    ):
        response = httpx.post(
            f"{link}/tus/", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": value}
        )
        assert response.status_code == 400, value


def test_duplicate_content_length_headers(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    response = exchange(
        f"{link}/dup.bin", "PUT",
        [("Content-Length", "5"), ("Content-Length", "10"), ("Connection", "close")],
        b"x" * 10, half_close=True,
    )  # fmt: skip
    assert response is None or response.status == 400
    assert _files(link) == []


def test_content_length_with_chunked_is_not_smuggled(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    body = b"5\r\nhello\r\n0\r\n\r\n"
    response = exchange(
        f"{link}/smuggle.bin", "PUT",
        [("Content-Length", "3"), ("Transfer-Encoding", "chunked"), ("Connection", "close")],
        body, half_close=True,
    )  # fmt: skip
    if response is not None and response.status == 201:
        assert response.json()["size"] == 5  # chunked wins, as RFC 9112 says
    else:
        assert response is None or response.status == 400
        assert _files(link) == []


def test_multipart_with_a_broken_boundary(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    body = b'--real\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nx\r\n--real--'
    response = httpx.post(
        link, content=body, headers={"Content-Type": "multipart/form-data; boundary=fake"}
    )
    assert response.status_code == 400
    assert _files(link) == []


def test_multipart_with_a_thousand_parts(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    body = (
        b"".join(
            b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i
            for i in range(1000)
        )
        + b"--b--\r\n"
    )
    response = httpx.post(
        link, content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 400
    assert _files(link) == []


# -- slow and crowding clients -----------------------------------------------------


def _trickle_then_stop(gw: GatewayProcess, url: str, method: str,
                       headers: list[tuple[str, str]], first: bytes) -> None:  # fmt: skip
    with connect(url, timeout=15) as sock:
        sock.sendall(request_head(method, url, headers))
        for i in range(0, len(first), 200):
            sock.sendall(first[i : i + 200])
            time.sleep(0.2)
        # Now silent, connection held open: the idle timeout must end it.
        assert metric(gw.url, "gateway_uploads_in_flight") >= 1
        # read_response raises TimeoutError if the gateway keeps the connection open.
        response = read_response(sock, timeout=15)
        assert response is None or response.status == 408
    assert wait_for(lambda: _settled(gw))


def test_slow_put_client_trickles_then_stops(gw: GatewayProcess) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    _trickle_then_stop(gw, f"{link}/slow.bin", "PUT", [("Content-Length", str(MiB))], b"x" * 1000)
    assert _files(link) == []


def test_slow_form_client_trickles_then_stops(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    head = b'--s\r\nContent-Disposition: form-data; name="f"; filename="slow.bin"\r\n\r\n'
    _trickle_then_stop(
        gw, link, "POST",
        [("Content-Type", "multipart/form-data; boundary=s"), ("Content-Length", str(MiB))],
        head + b"x" * 600,
    )  # fmt: skip
    assert _files(link) == []


def _feed(sock: socket.socket, stop: threading.Event) -> None:
    """Keep a body coming at 20 KiB/s (well above the minimum rate) until told to stop."""
    with contextlib.suppress(OSError):
        while not stop.wait(0.05):
            sock.sendall(b"x" * 1024)


def test_many_simultaneous_uploads_from_one_link(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    held: list[socket.socket] = []
    stop = threading.Event()
    feeders = []
    try:
        for i in range(2):  # GATEWAY_LINK_CONCURRENCY=2
            sock = connect(f"{link}/held{i}.bin", timeout=10)
            sock.sendall(
                request_head("PUT", f"{link}/held{i}.bin", [("Content-Length", str(64 * MiB))])
                + b"x" * 100
            )
            held.append(sock)
            feeders.append(threading.Thread(target=_feed, args=(sock, stop), daemon=True))
            feeders[-1].start()
        assert wait_for(lambda: metric(gw.url, "gateway_uploads_in_flight") >= 2, timeout=5)
        # Both slots stay busy with live uploads: the third waits its 1 s, then gets 429.
        third = httpx.put(f"{link}/third.bin", content=b"x" * 10)
        assert third.status_code == 429
        assert int(third.headers["retry-after"]) > 0
        assert third.json()["error"]["code"] == "too_many_requests"
        other = httpx.put(f"{gw.link(_ticket())}/other.bin", content=b"x")
        assert other.status_code == 201  # another link is not affected
    finally:
        stop.set()
        for thread in feeders:
            thread.join(5)
        for sock in held:
            sock.close()
    assert wait_for(lambda: _settled(gw))
    assert httpx.put(f"{link}/later.bin", content=b"x").status_code == 201


# -- every response ------------------------------------------------------------------


def test_security_headers_on_every_response(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    responses = [
        httpx.get(f"{gw.url}/healthz"),
        httpx.get(f"{gw.url}/readyz"),
        httpx.get(f"{gw.url}/metrics"),
        httpx.get(f"{gw.url}/nowhere"),
        httpx.get(link),
        httpx.get(f"{link}/files"),
        httpx.put(f"{link}/ok.txt", content=b"x"),
        httpx.put(f"{gw.url}/u/forged/x.txt", content=b"x"),
        httpx.get(f"{gw.url}/files/forged/x.bin"),
        httpx.get(f"{gw.url}/tickets/1"),
        httpx.post(f"{gw.url}/api/links", json={}),
        httpx.request("DELETE", f"{gw.url}/healthz"),
        httpx.options(f"{link}/tus/", headers=TUS),
    ]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path}"
        assert response.headers.get("x-content-type-options") == "nosniff", where
        assert response.headers.get("x-frame-options") == "DENY", where
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, where


@pytest.mark.parametrize(
    "path",
    ["/", "/u/", "/files/", "/tickets/", "/static/", "/static/..%2f", "/data/", "/objects/",
     "/u/x/..%2f..%2f", "/.git/", "/secret.key"],
)  # fmt: skip
def test_no_directory_listing(gw: GatewayProcess, path: str) -> None:
    response = httpx.get(f"{gw.url}{path}")
    assert response.status_code in (302, 307, 400, 401, 403, 404, 405), path
    text = response.text.lower()
    for leak in ("index of", "secret.key", "objects/", "multipart", "outbox", "<li><a href"):
        assert leak not in text, (path, leak)


def test_slow_headers_do_not_pin_a_connection(gw: GatewayProcess) -> None:
    """A client that never finishes its request headers is cut off (here after 2 s)."""
    import socket

    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(b"PUT /u/x/y HTTP/1.1\r\nHost: a\r\n")  # never finishes the head
        try:
            data = sock.recv(1024)  # returns when the gateway closes the connection
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise AssertionError("the connection was still open after 30 s") from None
        assert data == b"" or data.startswith(b"HTTP/1.1 4")


def test_no_server_banner(gw: GatewayProcess) -> None:
    response = httpx.get(f"{gw.url}/healthz")
    assert "server" not in response.headers
