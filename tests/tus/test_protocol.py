"""The tus 1.0.0 endpoint, case by case, against a real gateway process."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.support.gateway import GatewayProcess
from tests.tus.support import OCTETS, TUS, b64, create, head, patch, receipt, stored_sha256

MiB = 1024 * 1024


def tus_endpoint(proc: GatewayProcess, ticket: str = "1001", **kwargs: int) -> tuple[str, str]:
    link = proc.link(ticket, **kwargs)
    return link, f"{link}/tus/"


def assert_cors(response: httpx.Response) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {
        h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"upload-offset", "location", "upload-expires", "x-gateway-file-id"} <= exposed
    assert "Tus-Resumable" in response.headers


def test_options_advertises_the_server(gateway_file: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_file, max_size=123456789)
    r = httpx.options(endpoint)
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Max-Size"] == "123456789"
    extensions = set(r.headers["Tus-Extension"].split(","))
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination",
            "checksum", "expiration", "concatenation"} <= extensions  # fmt: skip
    assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256"}
    assert_cors(r)


def test_cors_preflight_and_errors_carry_cors(gateway_file: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_file)
    pre = httpx.options(
        endpoint + "nonexistentuploadid0",
        headers={"Origin": "https://partner.example", "Access-Control-Request-Method": "PATCH",
                 "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type"},
    )  # fmt: skip
    assert pre.status_code == 204
    assert "PATCH" in pre.headers["Access-Control-Allow-Methods"]
    allowed = pre.headers["Access-Control-Allow-Headers"].lower()
    for name in ("tus-resumable", "upload-offset", "upload-checksum", "x-http-method-override"):
        assert name in allowed
    assert int(pre.headers["Access-Control-Max-Age"]) > 0
    missing = head(endpoint + "nonexistentuploadid0")
    assert missing.status_code == 404
    assert_cors(missing)


def test_creation_head_and_patch(gateway_any: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_any)
    data = os.urandom(3 * MiB + 17)
    r = create(endpoint, len(data), "report.txt", **{"Upload-Metadata": (
        f"filename {b64('report.txt')},filetype {b64('text/plain')},note")})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    url = r.headers["Location"]
    assert url.startswith(f"{link}/tus/")
    expires = parsedate_to_datetime(r.headers["Upload-Expires"])
    assert expires.timestamp() > time.time()
    h = head(url)
    assert h.status_code == 200
    assert h.headers["Upload-Offset"] == "0"
    assert h.headers["Upload-Length"] == str(len(data))
    assert h.headers["Cache-Control"] == "no-store"
    assert "filename " + b64("report.txt") in h.headers["Upload-Metadata"]
    assert "Upload-Expires" in h.headers
    first = patch(url, 0, data[: 2 * MiB])
    assert first.status_code == 204, first.text
    assert first.headers["Upload-Offset"] == str(2 * MiB)
    assert "X-Gateway-File-Id" not in first.headers
    assert head(url).headers["Upload-Offset"] == str(2 * MiB)
    last = patch(url, 2 * MiB, data[2 * MiB :])
    assert last.status_code == 204, last.text
    assert last.headers["Upload-Offset"] == str(len(data))
    file_id = last.headers["X-Gateway-File-Id"]
    got = receipt(link, file_id)
    assert got["filename"] == "report.txt"
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["route"] == "attachment"
    assert stored_sha256(gateway_any, "1001", file_id, "report.txt") == got["sha256"]
    # A finished upload still answers HEAD (clients that resume a finished upload stop there).
    done = head(url)
    assert done.status_code == 200
    assert done.headers["Upload-Offset"] == done.headers["Upload-Length"] == str(len(data))


def test_creation_with_upload_and_multipart(gateway_any: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_any)
    data = os.urandom(40 * MiB)
    digest = base64.b64encode(hashlib.sha1(data[: 10 * MiB]).digest()).decode()
    r = httpx.post(
        endpoint,
        content=data[: 10 * MiB],
        headers={**OCTETS, "Upload-Length": str(len(data)), "Upload-Checksum": f"sha1 {digest}",
                 "Upload-Metadata": f"filename {b64('big.bin')}"},
        timeout=60,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == str(10 * MiB)
    url = r.headers["Location"]
    r2 = patch(url, 10 * MiB, data[10 * MiB :])
    assert r2.status_code == 204, r2.text
    got = receipt(link, r2.headers["X-Gateway-File-Id"])
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["route"] == "storage"
    assert got["size"] == len(data)


def test_zero_length_upload_finishes_at_creation(gateway_file: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_file)
    r = create(endpoint, 0, "empty.txt")
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == "0"
    got = receipt(link, r.headers["X-Gateway-File-Id"])
    assert got["size"] == 0 and got["sha256"] == hashlib.sha256(b"").hexdigest()


def test_deferred_length(gateway_any: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_any)
    data = os.urandom(6 * MiB + 5)
    r = create(endpoint, None, "stream.log")
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    h = head(url)
    assert h.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in h.headers
    assert patch(url, 0, data[:MiB]).status_code == 204
    last = patch(url, MiB, data[MiB:], **{"Upload-Length": str(len(data))})
    assert last.status_code == 204, last.text
    got = receipt(link, last.headers["X-Gateway-File-Id"])
    assert got["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither length
        {"Upload-Length": "10", "Upload-Defer-Length": "1"},
        {"Upload-Length": "-1"},
        {"Upload-Length": "1e3"},
        {"Upload-Defer-Length": "2"},
        {"Upload-Length": "10", "Upload-Metadata": "filename !!!"},
        {"Upload-Length": "10", "Upload-Metadata": f"filename {b64('a')},filename {b64('b')}"},
        {"Upload-Length": "10", "Upload-Metadata": "file name YQ=="},
    ],
)
def test_creation_rejects_malformed_headers(
    gateway_file: GatewayProcess, headers: dict[str, str]
) -> None:
    _, endpoint = tus_endpoint(gateway_file)
    r = httpx.post(endpoint, headers={**TUS, **headers})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"]
    assert_cors(r)


def test_version_content_type_and_size_errors(gateway_file: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_file, max_size=10 * MiB)
    bad_version = httpx.post(endpoint, headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5"})
    assert bad_version.status_code == 412
    assert bad_version.headers["Tus-Version"] == "1.0.0"
    assert_cors(bad_version)
    no_version = httpx.post(endpoint, headers={"Upload-Length": "5"})
    assert no_version.status_code == 412
    too_big = create(endpoint, 10 * MiB + 1)
    assert too_big.status_code == 413
    assert_cors(too_big)
    url = create(endpoint, 5).headers["Location"]
    wrong_type = httpx.patch(
        url, content=b"12345",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert wrong_type.status_code == 415
    assert_cors(wrong_type)
    assert head(url).headers["Upload-Offset"] == "0"
    deferred = create(endpoint, None).headers["Location"]
    over = patch(deferred, 0, b"x" * 4, **{"Upload-Length": str(10 * MiB + 1)})
    assert over.status_code == 413


def test_offset_mismatch(gateway_any: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_any)
    url = create(endpoint, 100).headers["Location"]
    assert patch(url, 0, b"a" * 40).status_code == 204
    wrong = patch(url, 30, b"b" * 10)
    assert wrong.status_code == 409
    assert wrong.headers["Upload-Offset"] == "40"
    assert_cors(wrong)
    missing = httpx.patch(url, content=b"x", headers=OCTETS)
    assert missing.status_code == 400
    assert head(url).headers["Upload-Offset"] == "40"


def test_checksums(gateway_any: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_any)
    data = os.urandom(7 * MiB)
    url = create(endpoint, len(data)).headers["Location"]
    good = base64.b64encode(hashlib.md5(data[:MiB]).digest()).decode()  # noqa: S324
    assert patch(url, 0, data[:MiB], **{"Upload-Checksum": f"md5 {good}"}).status_code == 204
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    bad = patch(url, MiB, data[MiB : 6 * MiB], **{"Upload-Checksum": f"sha256 {wrong}"})
    assert bad.status_code == 460, bad.text
    assert_cors(bad)
    assert head(url).headers["Upload-Offset"] == str(MiB)  # nothing of the bad request counts
    unknown = patch(url, MiB, data[MiB:], **{"Upload-Checksum": f"crc32 {b64('abcd')}"})
    assert unknown.status_code == 400
    assert head(url).headers["Upload-Offset"] == str(MiB)
    rest = base64.b64encode(hashlib.sha256(data[MiB:]).digest()).decode()
    done = patch(url, MiB, data[MiB:], **{"Upload-Checksum": f"sha256 {rest}"})
    assert done.status_code == 204
    got = receipt(link, done.headers["X-Gateway-File-Id"])
    assert got["sha256"] == hashlib.sha256(data).hexdigest()


def test_termination(gateway_any: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_any)
    url = create(endpoint, 100).headers["Location"]
    assert patch(url, 0, b"a" * 10).status_code == 204
    gone = httpx.delete(url, headers=TUS)
    assert gone.status_code == 204
    assert gone.headers["Tus-Resumable"] == "1.0.0"
    after = head(url)
    assert after.status_code in (404, 410)
    assert patch(url, 10, b"b").status_code in (404, 410)


def test_method_override(gateway_file: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_file)
    url = create(endpoint, 6).headers["Location"]
    r = httpx.post(
        url, content=b"abcdef",
        headers={**OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )  # fmt: skip
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == "6"
    url2 = create(endpoint, 6).headers["Location"]
    d = httpx.post(url2, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert d.status_code == 204
    assert head(url2).status_code == 404


def test_link_for_another_ticket_cannot_touch_the_upload(gateway_file: GatewayProcess) -> None:
    _, endpoint_a = tus_endpoint(gateway_file, "1001")
    link_b, _ = tus_endpoint(gateway_file, "2002")
    url_a = create(endpoint_a, 10).headers["Location"]
    upload_id = url_a.rsplit("/", 1)[-1]
    other = f"{link_b}/tus/{upload_id}"
    assert head(other).status_code == 404
    assert patch(other, 0, b"x" * 10).status_code == 404
    assert httpx.delete(other, headers=TUS).status_code == 404
    assert head(url_a).headers["Upload-Offset"] == "0"
    # A second link for the same ticket may continue (links get rotated).
    link_a2, _ = tus_endpoint(gateway_file, "1001")
    assert patch(f"{link_a2}/tus/{upload_id}", 0, b"x" * 10).status_code == 204


def test_expired_link(gateway_file: GatewayProcess) -> None:
    _, endpoint = tus_endpoint(gateway_file, expires_in=2)
    url = create(endpoint, 10).headers["Location"]
    time.sleep(2.5)
    for response in (head(url), patch(url, 0, b"x" * 10), create(endpoint, 10)):
        assert response.status_code in (404, 410), response.text
        assert_cors(response)


def test_concurrent_patches_one_wins(gateway_any: GatewayProcess) -> None:
    link, endpoint = tus_endpoint(gateway_any)
    data = os.urandom(8 * MiB)
    url = create(endpoint, len(data)).headers["Location"]
    results: list[httpx.Response] = []
    start = threading.Barrier(2)

    def slow_body() -> Iterator[bytes]:
        for i in range(0, len(data), MiB):
            yield data[i : i + MiB]
            time.sleep(0.1)

    def send() -> None:
        start.wait()
        headers = {**OCTETS, "Upload-Offset": "0", "Content-Length": str(len(data))}
        results.append(httpx.patch(url, content=slow_body(), headers=headers, timeout=60))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 204 and codes[1] in (409, 423), [r.text for r in results]
    winner = next(r for r in results if r.status_code == 204)
    got = receipt(link, winner.headers["X-Gateway-File-Id"])
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
