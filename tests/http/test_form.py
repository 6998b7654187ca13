"""multipart/form-data through real gateway processes on both stores."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.rawhttp import exchange, metric, send_and_close, wait_for
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments
from tests.support.seaweed import SeaweedServer

MiB = 1024 * 1024


@pytest.fixture(scope="module", params=["file", "s3"])
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A 10 MiB buffer budget makes form parts 5 MiB, so a few MiB open a multipart upload."""
    work = tmp_path_factory.mktemp(f"form-{request.param}")
    env = gateway_env(work, GATEWAY_ATTACHMENT_MAX="1MiB", GATEWAY_BUFFER_MEMORY="10MiB")
    if request.param == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=seaweed.make_bucket(), **seaweed.env())
    proc = start_gateway(work, env)
    proc.seaweed = request.getfixturevalue("seaweed") if request.param == "s3" else None  # type: ignore[attr-defined]
    yield proc
    proc.kill()


def _ticket() -> str:
    return str(int.from_bytes(os.urandom(4), "big"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(link: str) -> list[dict[str, object]]:
    files: list[dict[str, object]] = httpx.get(f"{link}/files").json()["files"]
    return files


def _multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A form body; a part with no filename is a plain field."""
    out = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_several_files_with_curl(gw: GatewayProcess, tmp_path: Path) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    blobs = {"a.log": os.urandom(1000), "b.bin": os.urandom(2 * MiB + 9), "c.txt": b""}
    args = []
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
        args += ["-F", f"file=@{tmp_path / name}"]
    done = subprocess.run(
        ["curl", "-sS", "-f", "--max-time", "60", *args, link],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    receipts = json.loads(done.stdout)["files"]
    assert [r["filename"] for r in receipts] == list(blobs)
    for receipt, data in zip(receipts, blobs.values(), strict=True):
        assert receipt["size"] == len(data) and receipt["sha256"] == _sha(data)
        assert receipt["ticket"] == ticket
    assert [r["route"] for r in receipts] == ["attachment", "storage", "attachment"]
    assert len(_files(link)) == 3
    comments = ticket_comments(gw, ticket, wait_for=1)
    delivered = "\n".join(c["body"] for c in comments)
    for data in blobs.values():
        assert _sha(data) in delivered


def test_text_fields_are_ignored_but_files_kept(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    response = httpx.post(link, data={"note": "hello"}, files={"file": ("x.txt", b"payload")})
    assert response.status_code == 201
    assert [r["filename"] for r in response.json()["files"]] == ["x.txt"]


def test_form_without_files_is_400(gw: GatewayProcess) -> None:
    response = httpx.post(gw.link(_ticket()), data={"note": "no file"}, files={"x": ("", b"")})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=other", "multipart/form-data",
     "multipart/form-data; boundary=" + "b" * 71, "multipart/form-data; boundary="],
)  # fmt: skip
def test_broken_boundary_is_400(gw: GatewayProcess, content_type: str) -> None:
    link = gw.link(_ticket())
    body = _multipart("right", [("file", "a.txt", b"data")])
    response = httpx.post(link, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"code", "message"}
    assert _files(link) == []


def test_not_multipart_is_415(gw: GatewayProcess) -> None:
    response = httpx.post(gw.link(_ticket()), content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def test_a_thousand_parts_are_refused(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    # Plain fields cost the gateway nothing to store, so only the count can stop them.
    parts: list[tuple[str, str | None, bytes]] = [("file", "first.txt", b"x")]
    parts += [(f"field{i}", None, b"x") for i in range(999)]
    body = _multipart("many", parts)
    response = httpx.post(
        link,
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=many"},
        timeout=120,
    )
    assert response.status_code == 400
    assert "parts" in response.json()["error"]["message"]
    assert len(_files(link)) <= 1


def _open_multipart_uploads(gw: GatewayProcess) -> list[str]:
    seaweed: SeaweedServer = gw.seaweed  # type: ignore[attr-defined]
    client = seaweed.client()
    try:
        found = client.list_multipart_uploads(Bucket=gw.env["GATEWAY_S3_BUCKET"])
        return [u["Key"] for u in found.get("Uploads", [])]
    finally:
        client.close()


def test_body_cut_mid_file_leaves_nothing(gw: GatewayProcess) -> None:
    ticket = _ticket()
    link = gw.link(ticket)
    data = os.urandom(16 * MiB)
    body = _multipart("cut", [("file", "whole.bin", os.urandom(1000)), ("file", "big.bin", data)])
    failed_before = metric(gw.url, "gateway_uploads_failed_total", protocol="form")
    headers = [
        ("Content-Type", "multipart/form-data; boundary=cut"),
        ("Content-Length", str(len(body))),
    ]
    send_and_close(link, "POST", headers, body[: 12 * MiB], linger=1.0)
    assert wait_for(
        lambda: (
            metric(gw.url, "gateway_uploads_failed_total", protocol="form") > failed_before
            and metric(gw.url, "gateway_uploads_in_flight") == 0
        )
    )
    # The whole first file was stored and delivered; the cut one left no trace.
    assert [f["filename"] for f in _files(link)] == ["whole.bin"]
    comments = ticket_comments(gw, ticket, wait_for=1)
    assert "big.bin" not in "\n".join(c["body"] for c in comments)
    assert metric(gw.url, "gateway_buffer_bytes_in_use") == 0
    if gw.settings.storage == "s3":
        assert wait_for(lambda: _open_multipart_uploads(gw) == [], timeout=5)
    else:
        root = Path(gw.env["GATEWAY_DATA_DIR"])
        assert wait_for(
            lambda: not [p for p in root.rglob("multipart/*") if p.is_dir()], timeout=5
        ), list(root.rglob("multipart/*"))


def test_declared_length_longer_than_the_body_is_not_delivered(gw: GatewayProcess) -> None:
    link = gw.link(_ticket())
    body = _multipart("short", [("file", "a.bin", os.urandom(5000))])
    response = exchange(
        link,
        "POST",
        [("Content-Type", "multipart/form-data; boundary=short"),
         ("Content-Length", str(len(body) + 100)), ("Connection", "close")],
        body[:-40],
        half_close=True,
    )  # fmt: skip
    assert response is None or response.status >= 400
    assert _files(link) == []


def test_a_browser_form_post_that_fails_gets_an_html_page(gw: GatewayProcess) -> None:
    """The no-JavaScript form must not show a browser raw JSON: errors come back as HTML."""
    link = gw.link(_ticket(), max_size=1000)
    body = _multipart("b0undary", [("file", "big.bin", os.urandom(5000))])
    response = httpx.post(
        link,
        content=body,
        headers={
            "Content-Type": "multipart/form-data; boundary=b0undary",
            "Accept": "text/html,application/xhtml+xml",
        },
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "did not go through" in response.text
    expired = httpx.post(
        gw.link(_ticket(), expires_in=1).replace("/u/", "/u/x"),
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary", "Accept": "text/html"},
    )
    assert expired.status_code == 404
    assert expired.headers["content-type"].startswith("text/html")
