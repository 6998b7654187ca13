"""Downloads from the signed link in the ticket comment: bytes, ranges, validators, names."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote

import httpx
import pytest

from gateway.links import Links
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments
from tests.support.seaweed import SeaweedServer

MiB = 1024 * 1024
NAME = "Résumé – 日本語 report.bin"


@dataclass
class Uploaded:
    proc: GatewayProcess
    data: bytes
    url: str
    file_id: str

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.data).hexdigest()}"'


@pytest.fixture(scope="module", params=["file", "s3"])
def uploaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Uploaded]:
    """A 1.5 MiB file over a 1 MiB attachment limit: delivered as a download link."""
    work = tmp_path_factory.mktemp(f"dl-{request.param}")
    env = gateway_env(work, GATEWAY_ATTACHMENT_MAX="1MiB")
    if request.param == "s3":
        seaweed: SeaweedServer = request.getfixturevalue("seaweed")
        env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=seaweed.make_bucket(), **seaweed.env())
    proc = start_gateway(work, env)
    data = os.urandom(MiB + MiB // 2)
    response = httpx.put(f"{proc.link('5150')}/{quote(NAME)}", content=data)
    assert response.status_code == 201, response.text
    comments = ticket_comments(proc, "5150", wait_for=1)
    urls = re.findall(r"https?://\S+/files/\S+", comments[0]["body"])
    assert len(urls) == 1
    yield Uploaded(proc, data, urls[0], response.json()["file_id"])
    proc.kill()


def test_download_matches_the_upload(uploaded: Uploaded) -> None:
    response = httpx.get(uploaded.url)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(uploaded.data).digest()
    assert response.headers["content-length"] == str(len(uploaded.data))
    assert response.headers["etag"] == uploaded.etag
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_range(uploaded: Uploaded) -> None:
    size = len(uploaded.data)
    response = httpx.get(uploaded.url, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == uploaded.data[1000:2000]
    assert response.headers["content-range"] == f"bytes 1000-1999/{size}"
    assert response.headers["content-length"] == "1000"
    open_ended = httpx.get(uploaded.url, headers={"Range": f"bytes={size - 10}-"})
    assert open_ended.status_code == 206 and open_ended.content == uploaded.data[-10:]


def test_suffix_range(uploaded: Uploaded) -> None:
    size = len(uploaded.data)
    response = httpx.get(uploaded.url, headers={"Range": "bytes=-500"})
    assert response.status_code == 206
    assert response.content == uploaded.data[-500:]
    assert response.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"


def test_unsatisfiable_range_is_416(uploaded: Uploaded) -> None:
    size = len(uploaded.data)
    for value in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
        response = httpx.get(uploaded.url, headers={"Range": value})
        assert response.status_code == 416, value
        assert response.headers["content-range"] == f"bytes */{size}"


def test_ignored_ranges_give_the_whole_file(uploaded: Uploaded) -> None:
    for value in ("bytes=0-1,5-6", "items=0-5", "bytes=9-2"):
        response = httpx.get(uploaded.url, headers={"Range": value})
        assert response.status_code == 200, value
        assert len(response.content) == len(uploaded.data)


def test_if_range(uploaded: Uploaded) -> None:
    match = httpx.get(uploaded.url, headers={"Range": "bytes=0-9", "If-Range": uploaded.etag})
    assert match.status_code == 206 and match.content == uploaded.data[:10]
    stale = httpx.get(uploaded.url, headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == uploaded.data
    weak = httpx.get(uploaded.url, headers={"Range": "bytes=0-9", "If-Range": f"W/{uploaded.etag}"})
    assert weak.status_code == 200


def test_head(uploaded: Uploaded) -> None:
    response = httpx.head(uploaded.url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(uploaded.data))
    assert response.headers["etag"] == uploaded.etag
    ranged = httpx.head(uploaded.url, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "100"


def test_content_disposition_with_a_unicode_name(uploaded: Uploaded) -> None:
    header = httpx.get(uploaded.url).headers["content-disposition"]
    assert header.isascii()
    assert header.startswith('attachment; filename="')
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.endswith("report.bin") and fallback.isascii()
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == NAME


def test_tampered_link_is_403(uploaded: Uploaded) -> None:
    base, _, name = uploaded.url.rpartition("/")
    token = base.rsplit("/files/", 1)[1]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    prefix = base.rsplit("/files/", 1)[0]
    for bad in (tampered, token[:-2], "A" * len(token)):
        response = httpx.get(f"{prefix}/files/{bad}/{name}")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "download_invalid"
        assert "5150" not in response.text


def test_expired_link_is_410(uploaded: Uploaded) -> None:
    url, _ = Links(uploaded.proc.settings).download_url(uploaded.file_id, "x.bin", ttl=-60)
    response = httpx.get(url)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "download_expired"
    fresh, _ = Links(uploaded.proc.settings).download_url(uploaded.file_id, NAME, ttl=60)
    assert httpx.get(fresh).content == uploaded.data


def test_link_for_a_removed_file_is_410(uploaded: Uploaded) -> None:
    url, _ = Links(uploaded.proc.settings).download_url("Nonexistent0000000000", "x.bin")
    assert httpx.get(url).status_code == 410


def test_only_the_files_own_name_or_none_downloads(uploaded: Uploaded) -> None:
    base, _, name = uploaded.url.rpartition("/")
    assert unquote(name) == NAME
    for good in (uploaded.url, base, f"{base}/"):
        response = httpx.get(good)
        assert response.status_code == 200, good
        assert response.content == uploaded.data
    edited = [name[:-4], name + "x", quote("other.bin"), quote(NAME.upper()), f"{name}/extra"]
    for bad in edited:
        for method in ("GET", "HEAD"):
            response = httpx.request(method, f"{base}/{bad}")
            assert response.status_code == 404, (method, bad)
            if method == "GET":
                assert response.json()["error"]["code"] == "not_found"
                assert "5150" not in response.text
