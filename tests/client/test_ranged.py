"""gateway.client.ranged: kept-alive ranged GETs, redirects, Authorization, proxies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.client import ranged

BODY = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.seen.append((self.path, self.headers.get("Authorization"), self.client_address))
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to/") - 1 :].replace("/~", "http://", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    seen: list[tuple[str, str | None, tuple[str, int]]]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    started = []
    for _ in range(2):
        server = _Server(("127.0.0.1", 0), _Handler)
        server.seen = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started[0], started[1]
    for server in started:
        server.shutdown()
        server.server_close()


def _read_all(connections: ranged.Connections, url: str, headers: dict[str, str]) -> bytes:
    response, _ = connections.get(url, headers)
    view = memoryview(bytearray(len(BODY) + 10))
    got = 0
    while count := ranged.read_into(response, view[got:]):
        got += count
    assert response.status == 200 and response.isclosed()
    return bytes(view[:got])


def test_bodies_on_one_kept_alive_connection(servers: tuple[_Server, _Server]) -> None:
    a, _ = servers
    connections = ranged.Connections()
    try:
        for _ in range(3):
            assert _read_all(connections, f"{a.origin}/file", {}) == BODY
    finally:
        connections.close()
    assert len({address for _, _, address in a.seen}) == 1  # one client port: reused


def test_redirects_keep_authorization_only_on_the_same_origin(
    servers: tuple[_Server, _Server],
) -> None:
    a, b = servers
    connections = ranged.Connections()
    auth = {"Authorization": "Bearer staff"}
    try:
        same = f"{a.origin}/to/~127.0.0.1:{a.server_address[1]}/same"
        other = f"{a.origin}/to/~127.0.0.1:{b.server_address[1]}/other"
        assert _read_all(connections, same, auth) == BODY
        response, final = connections.get(other, auth)
        assert final == f"{b.origin}/other"
        assert ranged.read_some(response, len(BODY)) == BODY
    finally:
        connections.close()
    assert ("/same", "Bearer staff") in [(path, header) for path, header, _ in a.seen]
    assert [(path, header) for path, header, _ in b.seen] == [("/other", None)]


def test_a_closed_server_is_a_network_error() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    url = f"{server.origin}/file"
    server.server_close()
    with pytest.raises(ranged.NetworkError):
        ranged.Connections().get(url, {})


@pytest.mark.parametrize(
    ("env", "usable"),
    [
        ({}, True),
        ({"NO_PROXY": "example.com"}, True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, False),
        ({"http_proxy": "http://proxy:3128"}, False),
        ({"ALL_PROXY": "socks5://proxy:1080"}, False),
    ],
)
def test_usable_only_without_a_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], usable: bool
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert ranged.usable() is usable


def test_error_message_reads_the_gateways_json() -> None:
    body = b'{"error": {"code": "gone", "message": "This file has been removed."}}'
    assert ranged.error_message(body, "Gone") == "This file has been removed."
    assert ranged.error_message(b"<html>", "Gone") == "Gone"
