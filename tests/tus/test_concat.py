"""The tus concatenation extension: partial uploads joined into one delivered file."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.ops.support import scrape, value
from tests.support.gateway import GatewayProcess, run_sweep, ticket_comments
from tests.tus.support import (
    OCTETS,
    TUS,
    b64,
    create,
    head,
    patch,
    receipt,
    receipts,
    stored_sha256,
)

MiB = 1024 * 1024


def partial(endpoint: str, data: bytes, *, with_upload: bool = False) -> str:
    """A complete partial upload of ``data``; its URL."""
    if with_upload:
        r = httpx.post(
            endpoint, content=data,
            headers={**OCTETS, "Upload-Concat": "partial", "Upload-Length": str(len(data))},
            timeout=60,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.headers["Upload-Offset"] == str(len(data))
        return r.headers["Location"]
    r = create(endpoint, len(data), **{"Upload-Concat": "partial"})
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    if data:
        done = patch(url, 0, data)
        assert done.status_code == 204, done.text
        assert "X-Gateway-File-Id" not in done.headers  # a partial is never a file
    return url


def final(
    endpoint: str, urls: list[str], filename: str = "joined.bin", **headers: str
) -> httpx.Response:
    sent = {**TUS, "Upload-Concat": "final;" + " ".join(urls),
            "Upload-Metadata": f"filename {b64(filename)}", **headers}  # fmt: skip
    return httpx.post(endpoint, headers=sent, timeout=120)


def test_partials_join_into_one_delivered_file(gateway_any: GatewayProcess) -> None:
    link = gateway_any.link("701")
    endpoint = f"{link}/tus/"
    options = httpx.options(endpoint)
    assert "concatenation" in options.headers["Tus-Extension"].split(",")
    before = scrape(gateway_any)
    pieces = [os.urandom(6 * MiB), os.urandom(17 * MiB + 3), b"", os.urandom(MiB + 5)]
    urls = [partial(endpoint, pieces[0], with_upload=True)]
    urls += [partial(endpoint, piece) for piece in pieces[1:]]
    shown = head(urls[1])
    assert shown.headers["Upload-Concat"] == "partial"
    assert shown.headers["Upload-Offset"] == str(len(pieces[1]))
    assert receipts(link) == []  # finished partials are not files
    # Partial URLs may be sent as paths, as some clients do.
    paths = [httpx.URL(u).raw_path.decode() for u in urls]
    r = final(endpoint, [urls[0], *paths[1:]])
    assert r.status_code == 201, r.text
    data = b"".join(pieces)
    assert r.headers["Upload-Length"] == r.headers["Upload-Offset"] == str(len(data))
    file_id = r.headers["X-Gateway-File-Id"]
    got = receipt(link, file_id)
    assert got["filename"] == "joined.bin"
    assert got["size"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["route"] == "storage"  # 24 MiB: larger than an attachment
    assert [f["file_id"] for f in receipts(link)] == [file_id]
    assert stored_sha256(gateway_any, "701", file_id, "joined.bin") == got["sha256"]
    # Four partials and a final are one upload begun and one finished.
    after = scrape(gateway_any)
    started = "gateway_uploads_started_total"
    assert value(after, started, protocol="tus") - value(before, started, protocol="tus") == 1
    finished = ("gateway_uploads_finished_total", {"protocol": "tus", "route": "storage"})
    assert value(after, finished[0], **finished[1]) - value(before, finished[0], **finished[1]) == 1
    comments = ticket_comments(gateway_any, "701", wait_for=1)
    assert sum(c["body"].count("[upload-gateway file ") for c in comments) == 1
    # The partials are gone; the final upload answers HEAD as finished.
    assert all(head(u).status_code == 404 for u in urls)
    done = head(r.headers["Location"])
    assert done.status_code == 200
    assert done.headers["Upload-Offset"] == str(len(data))
    # A client that lost the answer and repeats its final POST learns the same file.
    again = final(endpoint, urls)
    assert again.status_code == 201, again.text
    assert again.headers["X-Gateway-File-Id"] == file_id
    assert len(receipts(link)) == 1


def test_small_partials_make_an_attachment(gateway_file: GatewayProcess) -> None:
    link = gateway_file.link("702")
    endpoint = f"{link}/tus/"
    pieces = [b"first line\n", b"second line\n", b"x"]
    urls = [partial(endpoint, piece) for piece in pieces]
    r = final(endpoint, urls, "notes.txt")
    assert r.status_code == 201, r.text
    got = receipt(link, r.headers["X-Gateway-File-Id"])
    assert got["route"] == "attachment"
    assert got["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert stored_sha256(gateway_file, "702", got["file_id"], "notes.txt") == got["sha256"]


def test_final_refuses_what_it_cannot_join(gateway_file: GatewayProcess) -> None:
    link = gateway_file.link("703", max_size=20 * MiB)
    endpoint = f"{link}/tus/"
    complete = partial(endpoint, b"a" * 100)
    unfinished = create(endpoint, 100, **{"Upload-Concat": "partial"}).headers["Location"]
    assert patch(unfinished, 0, b"b" * 50).status_code == 204
    ordinary = create(endpoint, 10).headers["Location"]
    other_ticket = partial(f"{gateway_file.link('704')}/tus/", b"c" * 10)
    big = [partial(endpoint, os.urandom(11 * MiB)) for _ in range(2)]
    cases: list[tuple[Any, int, str]] = [
        (final(endpoint, [complete, unfinished]), 400, "not complete"),
        (final(endpoint, [complete, ordinary]), 400, "not a partial upload"),
        (final(endpoint, [complete, complete]), 400, "twice"),
        (final(endpoint, [complete, other_ticket]), 404, ""),
        (final(endpoint, [complete, f"{link}/tus/nosuchuploadatall0"]), 404, ""),
        (
            final(endpoint, [complete, "https://elsewhere.example/files/x"]),
            400,
            "not an upload URL",
        ),
        (final(endpoint, big), 413, ""),
        (final(endpoint, [complete], **{"Upload-Length": "100"}), 400, "no length"),
        (httpx.post(endpoint, headers={**TUS, "Upload-Concat": "final;"}), 400, "names no"),
        (httpx.post(endpoint, headers={**TUS, "Upload-Concat": "whole"}), 400, "partial"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (status, response.text)
        assert words in response.text
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert receipts(link) == []
    # Nothing refused was consumed: the complete partial still joins.
    assert head(complete).headers["Upload-Offset"] == "100"
    ok = final(endpoint, [complete])
    assert ok.status_code == 201, ok.text
    assert receipt(link, ok.headers["X-Gateway-File-Id"])["size"] == 100


def kill_mid_assembly(
    gateway: GatewayProcess, seaweed: Any, endpoint: str
) -> tuple[list[bytes], list[str]]:
    """Partials of 256 MiB in all, then a final POST whose gateway is SIGKILLed mid-copy:
    as soon as the final upload is recorded for assembly (its ``assembling/`` marker),
    not after a fixed pause that a fast join outruns or a slow start never reaches."""
    pieces = [os.urandom(160 * MiB), os.urandom(96 * MiB + 1)]
    urls = [partial(endpoint, piece) for piece in pieces]
    answers: list[BaseException | httpx.Response] = []

    def first_try() -> None:
        try:
            answers.append(final(endpoint, urls))
        except httpx.HTTPError as exc:
            answers.append(exc)

    thread = threading.Thread(target=first_try)
    thread.start()
    wait_for_assembly_marker(gateway, seaweed)
    assert not answers, "the assembly finished before the kill; the test proves nothing"
    gateway.kill()
    thread.join(30)
    assert answers and isinstance(answers[0], httpx.HTTPError)
    return pieces, urls


def test_assembly_cut_by_a_kill_resumes(gateway_s3: GatewayProcess, seaweed: Any) -> None:
    """The final POST dies with its gateway mid-copy; the partials survive. HEAD on the final
    upload restarts the copy (once the dead process's lease runs out), and a repeated final
    POST then answers with the same file."""
    link = gateway_s3.link("705")
    endpoint = f"{link}/tus/"
    pieces, urls = kill_mid_assembly(gateway_s3, seaweed, endpoint)
    gateway_s3.start()
    final_url = f"{endpoint}{final_upload_id(gateway_s3, seaweed)}"
    polls = 0
    deadline = time.monotonic() + 120
    while True:
        h = head(final_url)
        assert h.status_code == 200, h.text
        if "X-Gateway-File-Id" in h.headers or time.monotonic() > deadline:
            break
        assert "Upload-Offset" not in h.headers  # still copying
        assert h.headers["Upload-Concat"].startswith("final;")
        polls += 1
        time.sleep(float(h.headers["Retry-After"]))
    assert polls > 0
    data = b"".join(pieces)
    assert h.headers["Upload-Offset"] == str(len(data))
    file_id = h.headers["X-Gateway-File-Id"]
    assert file_id == final_url.rsplit("/", 1)[-1]
    digest = hashlib.sha256(data).hexdigest()
    assert receipt(link, file_id)["sha256"] == digest
    assert stored_sha256(gateway_s3, "705", file_id, "joined.bin") == digest
    again = final(endpoint, urls)
    assert again.status_code == 201, again.text
    assert again.headers["X-Gateway-File-Id"] == file_id
    assert len(receipts(link)) == 1


def test_assembly_cut_by_a_kill_finishes_with_no_client_help(
    gateway_s3: GatewayProcess, seaweed: Any
) -> None:
    """The client gives up after its final POST failed. The restarted gateway's assembly
    check finds the final upload (once the dead process's lease runs out) and finishes it:
    the file is delivered once, and a final POST sent later learns it."""
    link = gateway_s3.link("708")
    endpoint = f"{link}/tus/"
    pieces, urls = kill_mid_assembly(gateway_s3, seaweed, endpoint)
    gateway_s3.start()
    deadline = time.monotonic() + 120
    while not receipts(link) and time.monotonic() < deadline:
        time.sleep(1.0)
    [got] = receipts(link)
    data = b"".join(pieces)
    assert got["size"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored_sha256(gateway_s3, "708", got["file_id"], "joined.bin") == got["sha256"]
    comments = ticket_comments(gateway_s3, "708", wait_for=1)
    assert sum(c["body"].count("[upload-gateway file ") for c in comments) == 1
    assert all(head(u).status_code == 404 for u in urls)  # the partials went with it
    late = final(endpoint, urls)
    assert late.status_code == 201, late.text
    assert late.headers["X-Gateway-File-Id"] == got["file_id"]


def test_final_posts_at_once_make_one_file(gateway_s3: GatewayProcess) -> None:
    """A client repeating its final POST while the first one still copies gets the same upload;
    another final naming one of those partial uploads is refused."""
    link = gateway_s3.link("707")
    endpoint = f"{link}/tus/"
    pieces = [os.urandom(128 * MiB), os.urandom(128 * MiB), b"spare"]
    urls = [partial(endpoint, piece) for piece in pieces]
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(final(endpoint, urls[:2])))
    thread.start()
    time.sleep(0.1)  # the first POST has claimed the partials; joining 256 MiB takes longer
    other = final(endpoint, urls[1:])
    copying = not answers
    again = final(endpoint, urls[:2])
    thread.join(120)
    assert copying, "the first final POST finished before the others; the test proves nothing"
    assert other.status_code == 400, other.text
    assert "already part of another final upload" in other.text
    assert answers[0].status_code == again.status_code == 201, (answers[0].text, again.text)
    assert answers[0].headers["Location"] == again.headers["Location"]
    file_id = answers[0].headers["X-Gateway-File-Id"]
    assert again.headers["X-Gateway-File-Id"] == file_id
    data = b"".join(pieces[:2])
    assert [(f["file_id"], f["sha256"]) for f in receipts(link)] == [
        (file_id, hashlib.sha256(data).hexdigest())
    ]
    assert head(urls[2]).headers["Upload-Offset"] == "5"  # the refused final took nothing


def wait_for_assembly_marker(proc: GatewayProcess, seaweed: Any, timeout: float = 60.0) -> None:
    """Poll the gateway's bucket until a final upload's ``assembling/`` marker exists."""
    s3 = seaweed.client()
    bucket = proc.env["GATEWAY_S3_BUCKET"]
    prefix = proc.env.get("GATEWAY_S3_PREFIX", "")
    deadline = time.monotonic() + timeout
    try:
        while not s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}assembling/").get("Contents"):
            assert time.monotonic() < deadline, "the final upload was never recorded"
            time.sleep(0.02)
    finally:
        s3.close()


def final_upload_id(proc: GatewayProcess, seaweed: Any) -> str:
    """The id of the one final upload recorded in the gateway's bucket."""
    s3 = seaweed.client()
    try:
        bucket = proc.env["GATEWAY_S3_BUCKET"]
        prefix = proc.env.get("GATEWAY_S3_PREFIX", "")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}uploads/")
        finals = []
        for item in listed.get("Contents", []):
            if item["Key"].endswith("/info.json"):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                if json.loads(body).get("concat") == "final":
                    finals.append(item["Key"].split("/")[-2])
        assert len(finals) == 1, finals
        return str(finals[0])
    finally:
        s3.close()


def test_sweep_removes_unused_partials_and_old_markers(gateway_file: GatewayProcess) -> None:
    link = gateway_file.link("706", expires_in=4)
    endpoint = f"{link}/tus/"
    url = partial(endpoint, os.urandom(6 * MiB))
    upload_id = url.rsplit("/", 1)[-1]
    joined = final(endpoint, [partial(endpoint, b"one"), partial(endpoint, b"two")])
    assert joined.status_code == 201, joined.text
    file_id = joined.headers["X-Gateway-File-Id"]
    root = Path(gateway_file.env["GATEWAY_DATA_DIR"]) / "store" / "objects"
    assert (root / "files" / upload_id / "data").exists()
    assert len(list((root / "joined").iterdir())) == 2
    time.sleep(4.5)
    report = run_sweep(gateway_file)
    assert "expired uploads removed: 1" in report
    assert "expired concatenation markers removed: 2" in report
    assert not (root / "files" / upload_id / "data").exists()
    assert not list((root / "uploads").rglob("*"))
    assert (root / "files" / file_id / "data").exists()  # the joined file itself stays
