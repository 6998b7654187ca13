"""Structured logs of a running gateway: JSON lines, request ids, no credentials.

Everything the process writes (uvicorn's own lines and access log included)
goes through the gateway's formatter, so every line must parse; upload and
download tokens are credentials, so no log line may carry one whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.support import log_records, put, random_bytes, wait_until
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments

TICKET = "9101"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    env = gateway_env(tmp_path / "gw", GATEWAY_ATTACHMENT_MAX="64KiB")
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


def _token(url: str, kind: str) -> str:
    found = re.search(rf"/{kind}/([A-Za-z0-9_-]+)", url)
    assert found, url
    return found[1]


def _access_line(proc: GatewayProcess, request_id: str) -> dict[str, Any] | None:
    for record in log_records(proc):
        if record["logger"] == "uvicorn.access" and record.get("request_id") == request_id:
            return record
    return None


def test_json_lines_request_ids_and_redacted_tokens(gateway: GatewayProcess) -> None:
    link = gateway.link(TICKET)
    upload_token = _token(link, "u")

    # A request id given by the caller is echoed and names the access line.
    given = "ops-test-4f1c.9:a_b"
    response = put(link, "report.bin", random_bytes(100_000), **{"X-Request-ID": given})
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == given
    line = wait_until(lambda: _access_line(gateway, given), "the access line of the PUT")
    assert '"PUT /u/' in line["msg"] and "201" in line["msg"]
    audit = [r for r in log_records(gateway) if r.get("request_id") == given]
    assert {r["msg"] for r in audit if r["logger"] == "gateway.audit"} >= {
        "upload_started",
        "upload_finished",
    }

    # Without one (or with one that is not a plain token), the gateway makes one up.
    for headers in ({}, {"X-Request-ID": "no spaces allowed\tor tabs"}):
        made = httpx.get(f"{gateway.url}/healthz", headers=headers).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", made)
        wait_until(partial(_access_line, gateway, made), "the generated id's line")

    # The signed download link from the ticket comment, and a tampered upload link.
    [comment] = ticket_comments(gateway, TICKET, wait_for=1)
    download = re.search(r"Download: (\S+)", comment["body"])
    assert download, comment["body"]
    download_token = _token(download[1], "files")
    assert httpx.get(download[1], headers={"X-Request-ID": "dl-1"}).status_code == 200
    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    assert httpx.get(f"{tampered}/files", headers={"X-Request-ID": "bad-1"}).status_code in (
        403,
        404,
    )
    wait_until(lambda: _access_line(gateway, "dl-1"), "the download's access line")
    wait_until(lambda: _access_line(gateway, "bad-1"), "the bad token's access line")

    text = gateway.log_path.read_text()
    records = log_records(gateway)  # every line parses as JSON
    assert records
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= set(record)
    for secret in (upload_token, download_token, _token(tampered, "u")):
        assert secret not in text
        # What is kept is a short prefix, enough to tell links apart.
        assert secret[:8] in text


def test_text_format_is_one_readable_line_per_event(tmp_path: Path) -> None:
    env = gateway_env(tmp_path / "gw", GATEWAY_LOG_FORMAT="text")
    proc = start_gateway(tmp_path / "gw", env)
    try:
        link = proc.link(TICKET)
        response = put(link, "a.txt", b"hello\n", **{"X-Request-ID": "text-req-1"})
        assert response.status_code == 201
        wait_until(lambda: "text-req-1" in proc.log_path.read_text(), "the access line")
        text = proc.log_path.read_text()
    finally:
        proc.kill()
    lines = [ln for ln in text.splitlines() if "[text-req-1]" in ln]
    assert any("uvicorn.access" in ln and "PUT /u/" in ln for ln in lines), lines
    for ln in text.splitlines():
        if ln.startswith("---"):
            continue
        with pytest.raises(json.JSONDecodeError):
            json.loads(ln)
    assert _token(link, "u") not in text
