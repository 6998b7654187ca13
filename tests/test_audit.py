"""The audit trail: one JSON line per event, saying who, where, which file, how many bytes.

A real gateway (JSON logs, scanning with a real clamd) is driven through a
whole file's life: a link minted through the staff API, uploads by PUT and
by tus, the scan, the delivery, downloads whole and by range. Its log must
hold exactly one audit line per event with the fields that matter, and no
credential anywhere: not the upload or download token, not the signing
secret, not the staff token. ``gateway link`` writes its own audit line.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.links import Links
from tests.support.clamd import ClamdServer
from tests.support.gateway import (
    GatewayProcess,
    gateway_env,
    staff_headers,
    start_gateway,
    ticket_comments,
)

TIMEOUT = 60.0


@pytest.fixture
def gateway(tmp_path: Path, clamd: ClamdServer) -> Iterator[GatewayProcess]:
    workdir = tmp_path / "gw"
    env = gateway_env(workdir, GATEWAY_LOG_FORMAT="json", GATEWAY_CLAMD=clamd.tcp_address)
    proc = start_gateway(workdir, env)
    yield proc
    proc.kill()


def log_lines(proc: GatewayProcess) -> list[dict[str, Any]]:
    lines = []
    for raw in proc.log_path.read_text().splitlines():
        if raw.startswith("--- start"):
            continue
        lines.append(json.loads(raw))  # every line is JSON
    return lines


def audit(proc: GatewayProcess, event: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(proc)
        if line["logger"] == "gateway.audit"
        and line["msg"] == event
        and all(line.get(k) == v for k, v in match.items())
    ]


def one(proc: GatewayProcess, event: str, **match: Any) -> dict[str, Any]:
    found = audit(proc, event, **match)
    assert len(found) == 1, f"{event} {match}: {found}"
    return found[0]


def client_of(proc: GatewayProcess, request_id: str) -> str:
    """The client address the access log gives for a request."""
    for line in log_lines(proc):
        if line["logger"] == "uvicorn.access" and line.get("request_id") == request_id:
            return str(line["msg"]).split(" ", 1)[0]
    raise AssertionError(f"no access log line for request {request_id}")


def test_every_event_has_one_audit_line_and_no_secret_is_logged(
    gateway: GatewayProcess,
) -> None:
    minted = httpx.post(
        f"{gateway.url}/api/links",
        json={"ticket": "9100", "expires_in": 3600},
        headers=staff_headers(gateway),
        timeout=TIMEOUT,
    )
    assert minted.status_code == 201, minted.text
    link = minted.json()["url"]
    token = link.rsplit("/u/", 1)[1]
    put_data, tus_data = os.urandom(300_000), os.urandom(200_000)
    put = httpx.put(f"{link}/report.log", content=put_data, timeout=TIMEOUT)
    assert put.status_code == 201, put.text
    created = httpx.post(
        f"{link}/tus/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(tus_data)),
                 "Upload-Metadata": f"filename {base64.b64encode(b'trace.bin').decode()}"},
        timeout=TIMEOUT,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    patched = httpx.patch(
        httpx.URL(link).join(created.headers["Location"]),
        content=tus_data,
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                 "Content-Type": "application/offset+octet-stream"},
        timeout=TIMEOUT,
    )  # fmt: skip
    assert patched.status_code == 204, patched.text
    ticket_comments(gateway, "9100", wait_for=1)
    deadline = time.monotonic() + TIMEOUT
    while len(audit(gateway, "delivered")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    put_id = put.json()["file_id"]
    url, _ = Links(gateway.settings).download_url(put_id, "report.log")
    download_token = url.split("/files/", 1)[1].split("/", 1)[0]
    assert httpx.get(url, timeout=TIMEOUT).content == put_data
    ranged = httpx.get(url, headers={"Range": "bytes=100-1099"}, timeout=TIMEOUT)
    assert ranged.status_code == 206

    link_line = one(gateway, "link_minted", ticket="9100")
    assert link_line["via"] == "api" and link_line["from"] == "127.0.0.1"
    assert link_line["link_id"] and link_line["expires_at"] == minted.json()["expires_at"]

    for name, protocol, data in (("report.log", "put", put_data), ("trace.bin", "tus", tus_data)):
        started = one(gateway, "upload_started", filename=name)
        assert started["ticket"] == "9100" and started["protocol"] == protocol
        assert started["length"] == len(data)
        # Where it came from: the request id joins it to the access log's client address.
        assert client_of(gateway, started["request_id"]).startswith("127.0.0.1:")
        finished = one(gateway, "upload_finished", filename=name)
        assert finished["size"] == len(data) and len(finished["sha256"]) == 64
        file_id = finished["file_id"]
        assert one(gateway, "scanned", file_id=file_id)["result"] == "clean"
        delivered = one(gateway, "delivered", file_id=file_id)
        assert delivered["ticket"] == "9100" and delivered["size"] == len(data)

    downloads = audit(gateway, "downloaded", file_id=put_id)
    assert sorted(d["bytes"] for d in downloads) == [1000, len(put_data)]
    assert all(d["from"] == "127.0.0.1" and d["ticket"] == "9100" for d in downloads)

    text = gateway.log_path.read_text()
    for secret in (
        token,
        download_token,
        gateway.env["GATEWAY_SECRET"],
        gateway.env["GATEWAY_STAFF_TOKEN"],
    ):
        assert secret not in text
    # Tokens in request paths are cut to a short prefix, enough to correlate.
    access = [x["msg"] for x in log_lines(gateway) if x["logger"] == "uvicorn.access"]
    assert any(f"/u/{token[:8]}…/report.log" in msg for msg in access)
    assert any(f"/files/{download_token[:8]}…" in msg for msg in access)


def test_gateway_link_from_the_cli_writes_an_audit_line(gateway: GatewayProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "link", "--ticket", "9200", "--expires", "2h"],
        env=gateway.env, cwd=gateway.workdir, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert "/u/" in url
    lines = [json.loads(raw) for raw in done.stderr.splitlines() if raw.startswith("{")]
    (line,) = [x for x in lines if x["logger"] == "gateway.audit"]
    assert line["msg"] == "link_minted" and line["ticket"] == "9200" and line["via"] == "cli"
    assert line["by"]
    assert url.rsplit("/u/", 1)[1] not in done.stderr
    assert gateway.env["GATEWAY_SECRET"] not in done.stderr
