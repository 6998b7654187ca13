"""GATEWAY_DOWNLOAD_REDIRECT: a checked, audited 302 to presigned storage; no bytes through us."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from gateway.errors import ConfigError
from gateway.links import Links
from gateway.settings import load_settings
from tests.downloads.conftest import MiB, Stocked

DUMP = "dump.bin"


def metric(stocked: Stocked, name: str) -> float:
    text = httpx.get(f"{stocked.proc.url}/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def file_of(stocked: Stocked, name: str) -> dict:
    for file in stocked.listing():
        if file["filename"] == name:
            return file
    raise AssertionError(name)


def test_a_download_link_redirects_to_presigned_storage(redirecting: Stocked) -> None:
    file = file_of(redirecting, DUMP)
    url = file["download_url"]
    assert url.startswith(redirecting.proc.url)
    response = httpx.get(url)
    assert response.status_code == 302
    location = response.headers["location"]
    endpoint = redirecting.proc.env["AWS_ENDPOINT_URL_S3"]
    assert location.startswith(endpoint)
    query = parse_qs(urlsplit(location).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert unquote(query["response-content-disposition"][0]).startswith("attachment;")
    assert response.content == b""
    proxied = httpx.head(url)  # HEAD is answered by the gateway, with the SHA-256 ETag
    assert proxied.status_code == 200 and proxied.headers["etag"] == f'"{file["sha256"]}"'
    fetched = httpx.get(url, follow_redirects=True, timeout=60)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == file["sha256"]
    assert fetched.headers["content-disposition"] == proxied.headers["content-disposition"]
    ranged = httpx.get(url, follow_redirects=True, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and len(ranged.content) == 100
    data = redirecting.files[DUMP][0]
    assert ranged.content == data[100:200]


def test_gateway_download_through_redirects_sends_no_body_through_the_gateway(
    redirecting: Stocked, out: Path
) -> None:
    before_redirects = metric(redirecting, "gateway_download_redirects_total")
    file = file_of(redirecting, DUMP)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "download", "--quiet", file["download_url"],
         "-o", str(out), "--connections", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK {file['sha256']} {40 * MiB} ")
    assert metric(redirecting, "gateway_download_bytes_total") == 0
    assert metric(redirecting, "gateway_download_redirects_total") - before_redirects >= 10


def test_the_click_is_still_checked_and_audited(redirecting: Stocked) -> None:
    proc = redirecting.proc
    links = Links(proc.settings)
    eicar = file_of(redirecting, "eicar.com")
    assert eicar["status"] == "quarantined"
    quarantined, _ = links.download_url(eicar["file_id"], "eicar.com")
    refused = httpx.get(quarantined)
    assert refused.status_code == 403 and "location" not in refused.headers
    assert refused.json()["error"]["code"] == "forbidden"
    dump = file_of(redirecting, DUMP)
    expired, _ = links.download_url(dump["file_id"], DUMP, ttl=-5)
    assert httpx.get(expired).status_code == 410
    assert httpx.get(dump["download_url"]).status_code == 302
    events = [
        json.loads(line)
        for line in proc.log_path.read_text().splitlines()
        if line.startswith("{") and '"downloaded"' in line
    ]
    assert any(
        e.get("fields", e).get("redirect") is True
        and e.get("fields", e).get("file_id") == dump["file_id"]
        for e in events
    ), events[-3:]


def test_redirect_mode_needs_s3(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_DOWNLOAD_REDIRECT": "true"}
    with pytest.raises(ConfigError, match=r"^GATEWAY_DOWNLOAD_REDIRECT: needs GATEWAY_STORAGE=s3"):
        load_settings(env)
    assert load_settings({**env, "GATEWAY_DOWNLOAD_REDIRECT": "false"}).download_redirect is False
