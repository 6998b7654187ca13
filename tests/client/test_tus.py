"""The tus requests of ``gateway upload``: what users paste, metadata, refusals, and the
requests against a real gateway (OPTIONS, creation, HEAD, the receipt)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from gateway.client.outcome import Failed, message, reason
from gateway.client.streams import Span
from gateway.client.tus import TUS, Tus, final_of, link_of, metadata


def test_link_of_accepts_what_users_paste() -> None:
    assert link_of("http://gw/u/tok") == "http://gw/u/tok"
    assert link_of("http://gw/u/tok/") == "http://gw/u/tok"
    assert link_of(" http://gw/u/tok/tus/ ") == "http://gw/u/tok"
    with pytest.raises(Failed) as caught:
        link_of("http://gw/elsewhere")
    assert caught.value.reason == "bad-url"


def test_metadata_names_the_file_and_its_type() -> None:
    pairs = dict(item.split(" ") for item in metadata(Path("/x/notes é.txt")).split(","))
    assert base64.b64decode(pairs["filename"]).decode() == "notes é.txt"
    assert base64.b64decode(pairs["filetype"]).decode() == "text/plain"
    assert metadata(Path("blob")).startswith("filename ") and "," not in metadata(Path("blob"))


def test_refusals_give_a_reason_and_the_servers_message() -> None:
    error = {"error": {"code": "too_large", "message": "over 1000 bytes"}}
    answer = httpx.Response(413, json=error)
    assert reason(answer) == "http-413" and message(answer) == "over 1000 bytes"
    assert message(httpx.Response(502, text="<html>")) == "Bad Gateway"
    with pytest.raises(Failed) as caught:
        final_of(answer)
    assert caught.value.reason == "http-413"


def test_final_of_tells_a_joined_file_from_one_being_joined() -> None:
    joined = httpx.Response(
        201, headers={"Location": "http://gw/f", "Upload-Offset": "9", "X-Gateway-File-Id": "id"}
    )
    assert final_of(joined) == ("http://gw/f", "id")
    joining = httpx.Response(201, headers={"Location": "http://gw/f"})
    assert final_of(joining) == ("http://gw/f", None)


def test_offer_is_asked_once_with_a_round_trip(tus: Tus) -> None:
    offer = tus.offer()
    assert offer.concatenation and offer.max_size is not None
    assert offer.rtt is not None and 0 <= offer.rtt < 5
    assert tus.offer() is offer


def test_create_head_send_and_receipt(tus: Tus, tmp_path: Path) -> None:
    data = b"hello, tus"
    path = tmp_path / "hello.txt"
    path.write_bytes(data)
    url, file_id = tus.create(len(data), path)
    assert url.startswith(tus.endpoint) and file_id is None
    assert tus.where(url, Span(0, len(data))) == (0, None)
    headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    done = tus.client.patch(url, content=data, headers=headers)
    assert done.status_code == 204
    file_id = done.headers["x-gateway-file-id"]
    assert tus.where(url, Span(0, len(data))) == (len(data), file_id)
    digest = hashlib.sha256(data).hexdigest()
    tus.check_receipt(file_id, len(data), digest)
    with pytest.raises(Failed) as mismatch:
        tus.check_receipt(file_id, len(data), "0" * 64)
    assert mismatch.value.reason == "checksum-mismatch"
    with pytest.raises(Failed) as unknown:
        tus.check_receipt("no-such-file", len(data), digest)
    assert unknown.value.reason == "no-receipt"


def test_refused_creation_and_gone_uploads(tus: Tus, tmp_path: Path) -> None:
    with pytest.raises(Failed) as too_big:
        tus.create(1 << 60, tmp_path / "huge.bin")
    assert too_big.value.reason == "http-413"
    url = tus.create_partial(Span(0, 10))
    tus.delete_all([url])
    with pytest.raises(Failed) as gone:
        tus.where(url, Span(0, 10))
    assert gone.value.reason in ("http-404", "http-410")
