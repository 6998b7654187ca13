"""Small helpers shared by the tus tests: raw requests, receipts, stored bytes."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.ci import missing_tool
from tests.support.gateway import GatewayProcess

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
REPO = Path(__file__).resolve().parents[2]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(
    endpoint: str, length: int | None, filename: str = "file.bin", **headers: str
) -> httpx.Response:
    sent = {**TUS, "Upload-Metadata": f"filename {b64(filename)}"}
    if length is None:
        sent["Upload-Defer-Length"] = "1"
    else:
        sent["Upload-Length"] = str(length)
    sent.update(headers)
    return httpx.post(endpoint, headers=sent, timeout=30)


def patch(url: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    return httpx.patch(
        url, content=data, headers={**OCTETS, "Upload-Offset": str(offset), **headers}, timeout=120
    )


def head(url: str) -> httpx.Response:
    return httpx.head(url, headers=TUS, timeout=30)


def receipts(link: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{link}/files", timeout=30)
    response.raise_for_status()
    files: list[dict[str, Any]] = response.json()["files"]
    return files


def receipt(link: str, file_id: str) -> dict[str, Any]:
    found = [r for r in receipts(link) if r["file_id"] == file_id]
    assert found, f"no receipt for {file_id}"
    return found[0]


def stored_sha256(proc: GatewayProcess, ticket: str, file_id: str, filename: str) -> str:
    """SHA-256 of the stored file, read back through what the ticket comment offers.

    Large files: the signed download link in the comment; small files: the
    attachment (staff view).
    """
    from tests.support.gateway import ticket_comments

    mark = f"[upload-gateway file {file_id}]"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for comment in ticket_comments(proc, ticket):
            for block in comment["body"].split("• "):
                if mark not in block:
                    continue
                found = re.search(r"Download: (\S+)", block)
                if found:
                    return _download_sha256(found[1])
                for attachment in comment.get("attachments", []):
                    if attachment["file_name"] == filename:
                        return _download_sha256(
                            attachment["content_url"],
                            {"Authorization": f"Bearer {proc.env['GATEWAY_STAFF_TOKEN']}"},
                        )
        time.sleep(0.2)
    raise AssertionError(f"file {file_id} never showed up in a comment on ticket {ticket}")


def _download_sha256(url: str, headers: dict[str, str] | None = None) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_bytes(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 4 << 20))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def require_tool(name: str) -> str:
    """The tool's path; fail under CI, skip elsewhere, when it is missing."""
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed")
    return found
