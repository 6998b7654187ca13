"""GET /api/tickets/{id}/files and files.zip: staff only, fresh links, one verified ZIP."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.downloads.conftest import TICKET, MiB, Stocked, sparse_content, upload
from tests.support.gateway import GatewayProcess, staff_headers

FIELDS = {"file_id", "filename", "size", "sha256", "route", "status", "scan", "created_at",
          "download_url"}  # fmt: skip


def test_listing_names_every_file_with_a_fresh_link(stocked: Stocked) -> None:
    files = stocked.listing()
    assert len(files) == 4
    by_sha = stocked.by_sha()
    for file in files:
        assert FIELDS <= set(file)
        data = by_sha[file["sha256"]]
        assert file["size"] == len(data)
        assert file["route"] == ("storage" if len(data) > MiB else "attachment")
        if file["filename"] == "eicar.com":
            assert file["status"] == "quarantined" and file["download_url"] is None
            assert file["scan"].startswith("infected:")
            continue
        assert file["scan"] == "clean" and file["status"] == "delivered"
        response = httpx.get(file["download_url"])
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == file["sha256"]
    assert [f["created_at"] for f in files] == sorted(f["created_at"] for f in files)


def test_listing_is_for_staff_only(stocked: Stocked) -> None:
    url = f"{stocked.proc.url}/api/tickets/{TICKET}/files"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eA=="}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert "notes" not in response.text
    assert httpx.get(f"{url.removesuffix('/files')}/files.zip").status_code == 401


def test_listing_with_a_staff_session(stocked: Stocked) -> None:
    with httpx.Client(base_url=stocked.proc.url) as client:
        signed_in = client.post("/login", data={"token": stocked.proc.env["GATEWAY_STAFF_TOKEN"]})
        assert signed_in.status_code == 303
        response = client.get(f"/api/tickets/{TICKET}/files")
        assert response.status_code == 200 and len(response.json()["files"]) == 4
        page = client.get(f"/tickets/{TICKET}", headers={"Accept": "text/html"})
        assert f'href="/api/tickets/{TICKET}/files"' in page.text
        assert f'href="/api/tickets/{TICKET}/files.zip"' in page.text


def test_unknown_and_bad_tickets(stocked: Stocked) -> None:
    headers = staff_headers(stocked.proc)
    empty = httpx.get(f"{stocked.proc.url}/api/tickets/777/files", headers=headers)
    assert empty.status_code == 200 and empty.json()["files"] == []
    nothing = httpx.get(f"{stocked.proc.url}/api/tickets/777/files.zip", headers=headers)
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "not_found"
    bad = httpx.get(f"{stocked.proc.url}/api/tickets/a.b/files", headers=headers)
    assert bad.status_code == 404


def _zip_of(
    proc: GatewayProcess, ticket: str, target: Path | None = None, rss: list[int] | None = None
) -> zipfile.ZipFile:
    """The ticket's ZIP, in memory or in ``target``; ``rss`` collects the gateway's
    resident memory every 64 MiB of the way."""
    url = f"{proc.url}/api/tickets/{ticket}/files.zip"
    with httpx.stream("GET", url, headers=staff_headers(proc), timeout=600) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/zip"
        assert "attachment" in response.headers["content-disposition"]
        length = int(response.headers["content-length"])
        sink = io.BytesIO() if target is None else open(target, "wb")  # noqa: SIM115
        for index, chunk in enumerate(response.iter_bytes(4 * MiB)):
            sink.write(chunk)
            if rss is not None and index % 16 == 0:
                rss.append(proc.rss_bytes())
        assert sink.tell() == length
    if target is None:
        assert isinstance(sink, io.BytesIO)
        sink.seek(0)
        return zipfile.ZipFile(sink)
    sink.close()
    return zipfile.ZipFile(target)


def _member_sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as fh:  # zipfile checks each member's CRC-32 as it reads
        while block := fh.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def test_zip_holds_every_downloadable_file(stocked: Stocked) -> None:
    archive = _zip_of(stocked.proc, TICKET)
    names = sorted(archive.namelist())
    assert names == ["dump.bin", "notes (2).txt", "notes.txt"]
    assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    by_sha = stocked.by_sha()
    for name in names:
        assert _member_sha256(archive, name) in by_sha
    assert archive.testzip() is None


@pytest.mark.slow
def test_zip_of_a_5_gib_file_is_zip64(stocked: Stocked, tmp_path: Path) -> None:
    """A 5 GiB file (sparse content: zeros with random ends) and a small one."""
    size = 5 * 1024 * MiB
    source = tmp_path / "big.bin"
    head, tail = bytes(range(256)) * 4096, hashlib.sha256(b"tail").digest() * 1000
    with open(source, "wb") as fh:
        fh.write(head)
        fh.seek(size - len(tail))
        fh.write(tail)
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        while block := fh.read(16 * MiB):
            digest.update(block)
    with open(source, "rb") as fh:
        response = httpx.put(
            f"{stocked.proc.link('6061')}/big.bin", content=fh, timeout=1800,
            headers={"Content-Length": str(size)},
        )  # fmt: skip
    assert response.status_code == 201, response.text
    small = sparse_content(3 * MiB)
    upload(stocked.proc, "6061", "small.bin", small)
    deadline = time.monotonic() + 120
    while True:
        files = httpx.get(
            f"{stocked.proc.url}/api/tickets/6061/files", headers=staff_headers(stocked.proc)
        ).json()["files"]
        if sum(1 for f in files if f["download_url"]) == 2:
            break
        assert time.monotonic() < deadline, files
        time.sleep(0.5)
    source.unlink()
    rss: list[int] = []
    archive = _zip_of(stocked.proc, "6061", tmp_path / "all.zip", rss)
    assert len(rss) > 50 and max(rss) < 512 * MiB  # streamed: nothing held whole
    info = archive.getinfo("big.bin")
    assert info.file_size == size
    assert _member_sha256(archive, "big.bin") == digest.hexdigest()
    assert _member_sha256(archive, "small.bin") == hashlib.sha256(small).hexdigest()


def test_zip_from_the_file_store(gateway_file: GatewayProcess) -> None:
    first, second = sparse_content(2 * MiB), b"small\n" * 100
    upload(gateway_file, "88", "a.bin", first)
    upload(gateway_file, "88", "b.txt", second)
    deadline = time.monotonic() + 30
    while True:
        files = httpx.get(
            f"{gateway_file.url}/api/tickets/88/files", headers=staff_headers(gateway_file)
        ).json()["files"]
        if len(files) == 2 and all(f["download_url"] for f in files):
            break
        assert time.monotonic() < deadline, files
        time.sleep(0.1)
    archive = _zip_of(gateway_file, "88")
    assert archive.read("a.bin") == first and archive.read("b.txt") == second
