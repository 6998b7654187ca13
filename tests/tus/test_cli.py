"""``gateway upload``: completing, killed and re-run, output format, exit codes, and one
file sent as several partial uploads at once (tus concatenation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.client.state import StateFile, fingerprint
from gateway.client.streams import Part, final_header, parts_entry, split
from gateway.client.upload import link_of
from tests.support.gateway import GatewayProcess, ticket_comments, tus_bytes_received
from tests.tus.support import TUS, b64, random_file, receipts

MiB = 1024 * 1024


def cli(args: list[str], state: Path, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "upload", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, **popen,  # type: ignore[arg-type]
    )  # fmt: skip


def run(args: list[str], state: Path) -> tuple[int, list[str], str]:
    proc = cli(args, state)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out.splitlines(), err


def test_upload_two_files_and_output_format(gateway_file: GatewayProcess, tmp_path: Path) -> None:
    link = gateway_file.link("501")
    one, two = tmp_path / "one.bin", tmp_path / "two words.txt"
    sha_one = random_file(one, 3 * MiB + 1)
    sha_two = random_file(two, 1000)
    code, lines, err = run([link, str(one), str(two), "--chunk-size", "1MiB"], tmp_path / "st")
    assert code == 0, err
    assert lines == [f"OK {sha_one} {3 * MiB + 1} {one}", f"OK {sha_two} 1000 {two}"]
    stored = {r["filename"]: r for r in receipts(link)}
    assert stored["one.bin"]["sha256"] == sha_one
    assert stored["two words.txt"]["sha256"] == sha_two
    # Nothing unfinished is remembered after success.
    state = json.loads((tmp_path / "st" / "upload-gateway" / "uploads.json").read_text())
    assert state == {}


def test_failures_exit_non_zero(gateway_file: GatewayProcess, tmp_path: Path) -> None:
    small_link = gateway_file.link("502", max_size=1000)
    ok, big = tmp_path / "ok.txt", tmp_path / "big.bin"
    sha = random_file(ok, 10)
    random_file(big, 5000)
    code, lines, _ = run([small_link, str(ok), str(big)], tmp_path / "st")
    assert code == 1
    assert lines == [f"OK {sha} 10 {ok}", f"FAILED http-413 {big}"]
    forged = small_link[:-6] + "AAAAAA"
    code, lines, _ = run([forged, str(ok)], tmp_path / "st")
    assert code == 1
    assert lines[-1].startswith("FAILED http-404 ")
    code, _, err = run(["http://127.0.0.1:1/not-a-link", str(ok)], tmp_path / "st")
    assert code == 2 and "not an upload link" in err
    # A file over the cap that would go in streams is refused before any part is sent.
    capped_link = gateway_file.link("502", max_size=12 * MiB)
    large = tmp_path / "large.bin"
    random_file(large, 20 * MiB)
    code, lines, _ = run([capped_link, str(large), "--chunk-size", "1MiB"], tmp_path / "st2")
    assert code == 1 and lines == [f"FAILED http-413 {large}"]
    assert state_entries(tmp_path / "st2") == []  # no partial uploads were made


def test_killed_and_rerun_resumes(gateway_any: GatewayProcess, tmp_path: Path) -> None:
    link = gateway_any.link("503")
    path = tmp_path / "resume.bin"
    size = 40 * MiB
    sha = random_file(path, size)
    state = tmp_path / "st"
    state_file = state / "upload-gateway" / "uploads.json"
    # One upload for the whole file, as every earlier version of the client made them; the
    # re-run below (default --streams) continues it rather than starting over in parts.
    proc = cli([link, str(path), "--chunk-size", "1MiB", "--streams", "1", "--quiet"], state)
    url = None
    offset = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if url is None and state_file.exists():
                entries = list(json.loads(state_file.read_text()).values())
                url = entries[0]["url"] if entries else None
            if url is not None:
                offset = int(httpx.head(url, headers=TUS).headers.get("Upload-Offset", 0))
                if offset >= 3 * MiB:
                    break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert url is not None and 0 < offset < size, "the client finished before it could be killed"
    code, lines, err = run([link, str(path), "--chunk-size", "4MiB"], state)
    assert code == 0, err
    assert lines == [f"OK {sha} {size} {path}"]
    files = receipts(link)
    assert len(files) == 1  # resumed, not started over
    assert files[0]["sha256"] == sha and files[0]["route"] == "storage"
    assert files[0]["file_id"] == url.rsplit("/", 1)[-1]


def state_entries(state: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((state / "upload-gateway" / "uploads.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return list(data.values())


@contextmanager
def partials_seen(state: Path) -> Iterator[dict[str, list[str]]]:
    """Watch the state file while the client runs: the partial URLs of each file."""
    seen: dict[str, list[str]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in state_entries(state):
                if "parts" in entry:
                    seen[Path(entry["file"]).name] = [p["url"] for p in entry["parts"]]
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def test_streams_send_one_file_as_partials_joined_once(
    gateway_any: GatewayProcess, tmp_path: Path
) -> None:
    link = gateway_any.link("504")
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    sha_small = random_file(small, 12 * MiB + 3)  # two ranges (7 + 5 MiB): an attachment
    sha_large = random_file(large, 30 * MiB)  # four ranges: a download link
    state = tmp_path / "st"
    args = [link, str(small), str(large), "--chunk-size", "1MiB", "--streams", "4", "--quiet"]
    with partials_seen(state) as seen:
        code, lines, err = run(args, state)
    assert code == 0, err
    assert lines == [f"OK {sha_small} {12 * MiB + 3} {small}", f"OK {sha_large} {30 * MiB} {large}"]
    assert len(seen["small.bin"]) == 2 and len(seen["large.bin"]) == 4
    assert state_entries(state) == []
    # Exactly the two files have receipts: no partial upload was delivered on its own.
    files = {r["filename"]: r for r in receipts(link)}
    assert sorted(files) == ["large.bin", "small.bin"]
    assert files["small.bin"]["sha256"] == sha_small and files["small.bin"]["route"] == "attachment"
    assert files["large.bin"]["sha256"] == sha_large and files["large.bin"]["route"] == "storage"
    partial_ids = {url.rsplit("/", 1)[-1] for urls in seen.values() for url in urls}
    assert not partial_ids & {r["file_id"] for r in files.values()}
    # ... and each file is on the ticket exactly once.
    deadline = time.monotonic() + 30
    while True:
        comments = ticket_comments(gateway_any, "504", wait_for=1)
        text = "\n".join(c["body"] for c in comments)
        if text.count("[upload-gateway file ") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert text.count("[upload-gateway file ") == 2
    for receipt in files.values():
        assert text.count(f"[upload-gateway file {receipt['file_id']}]") == 1
    attached = [a["file_name"] for c in comments for a in c.get("attachments", [])]
    assert attached == ["small.bin"]


def test_streams_killed_mid_upload_and_rerun_resume(
    gateway_any: GatewayProcess, tmp_path: Path
) -> None:
    link = gateway_any.link("505")
    path = tmp_path / "parts.bin"
    size = 40 * MiB + 7
    sha = random_file(path, size)
    state = tmp_path / "st"
    proc = cli([link, str(path), "--chunk-size", "1MiB", "--streams", "4", "--quiet"], state)
    parts: list[dict[str, Any]] = []
    offsets: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            entries = state_entries(state)
            parts = entries[0].get("parts", []) if entries else []
            if parts:
                offsets = [
                    int(httpx.head(p["url"], headers=TUS).headers.get("Upload-Offset", 0))
                    for p in parts
                ]
                lengths = [p["end"] - p["start"] for p in parts]
                moving = [0 < o < n for o, n in zip(offsets, lengths, strict=True)]
                if sum(moving) >= 2 and sum(offsets) >= 3 * MiB:
                    break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(parts) == 4, "the client never sent the file in parts"
    lengths = [p["end"] - p["start"] for p in parts]
    unfinished = [o < n for o, n in zip(offsets, lengths, strict=True)]
    assert sum(unfinished) >= 2, "the client finished before it could be killed"
    code, lines, err = run([link, str(path), "--chunk-size", "4MiB"], state)
    assert code == 0, err
    assert lines == [f"OK {sha} {size} {path}"]
    files = receipts(link)
    assert len(files) == 1 and files[0]["sha256"] == sha and files[0]["size"] == size
    assert state_entries(state) == []
    # Resumed, not started over: every partial the killed run made was completed and used
    # (a used one is complete or, once joined, gone), none left half sent.
    for part, length in zip(parts, lengths, strict=True):
        answer = httpx.head(part["url"], headers=TUS)
        assert answer.status_code in (404, 410) or (
            answer.status_code == 200 and int(answer.headers["Upload-Offset"]) == length
        ), (part, answer.status_code, answer.headers)


def test_streams_rerun_finds_the_final_upload(gateway_file: GatewayProcess, tmp_path: Path) -> None:
    """A run that died after its final POST reached the server: re-running learns the file
    that POST made, whether the client had heard of the final upload or not."""
    link = gateway_file.link("506")
    endpoint = f"{link}/tus/"
    state = tmp_path / "st"
    states = StateFile(state / "upload-gateway")
    expected: list[str] = []
    file_ids: list[str] = []
    for name, remembers_final in (("lost-answer.bin", False), ("known-final.bin", True)):
        path = tmp_path / name
        size = 10 * MiB + 1
        sha = random_file(path, size)
        data = path.read_bytes()
        parts = [Part(partial(endpoint, data[s.start : s.end]), s) for s in split(size, 2, MiB)]
        joined = httpx.post(
            endpoint,
            headers={**TUS, "Upload-Concat": final_header(parts),
                     "Upload-Metadata": f"filename {b64(name)}"},
            timeout=60,
        )  # fmt: skip
        assert joined.status_code == 201, joined.text
        file_ids.append(joined.headers["X-Gateway-File-Id"])
        final = joined.headers["Location"] if remembers_final else None
        states.put(fingerprint(path, link_of(link)), parts_entry(parts, final))
        expected.append(f"OK {sha} {size} {path}")
    args = [link, *(str(tmp_path / n) for n in ("lost-answer.bin", "known-final.bin"))]
    code, lines, err = run([*args, "--chunk-size", "1MiB"], state)
    assert code == 0, err
    assert lines == expected
    assert sorted(r["file_id"] for r in receipts(link)) == sorted(file_ids)  # no second copy
    assert state_entries(state) == []


def partial(endpoint: str, data: bytes) -> str:
    created = httpx.post(
        endpoint,
        headers={**TUS, "Upload-Concat": "partial", "Upload-Length": str(len(data))},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    sent = httpx.patch(
        url, content=data, timeout=60,
        headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
    )  # fmt: skip
    assert sent.status_code == 204, sent.text
    return url


# -- the defaults: whole ranges in one request each, streams chosen by distance ----------


def test_default_run_close_by_sends_one_request_and_takes_each_byte_once(
    gateway_any: GatewayProcess, tmp_path: Path
) -> None:
    """On loopback ``--streams auto`` is one stream, and the file goes as one PATCH."""
    link = gateway_any.link("510")
    path = tmp_path / "near.bin"
    size = 48 * MiB + 5
    sha = random_file(path, size)
    state = tmp_path / "st"
    with partials_seen(state) as seen:
        code, lines, err = run([link, str(path), "--quiet"], state)
    assert code == 0, err
    assert lines == [f"OK {sha} {size} {path}"]
    assert seen == {}  # no partial uploads
    assert tus_bytes_received(gateway_any) == size
    log = gateway_any.log_path.read_text()
    assert log.count('"PATCH /u/') == 1, "the whole file in one request"


def test_default_run_far_away_goes_parallel_and_resumes_after_a_kill(
    proxied_gateway: tuple[GatewayProcess, Any], tmp_path: Path
) -> None:
    """Through 25 ms each way, ``auto`` takes four streams; killed mid-request, a re-run
    continues every partial from the offset the gateway reports and sends no byte twice."""
    gateway, proxy = proxied_gateway
    link = gateway.link("511")
    assert link.startswith(proxy.url)
    path = tmp_path / "far.bin"
    size = 64 * MiB + 11
    sha = random_file(path, size)
    state = tmp_path / "st"
    proc = cli([link, str(path), "--quiet"], state)
    parts: list[str] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for entry in state_entries(state):
                parts = [p["url"] for p in entry.get("parts", [])]
            if parts and tus_bytes_received(gateway) >= 8 * MiB:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(parts) == 4, "auto chose four streams through the slow path"
    held = tus_bytes_received(gateway)
    assert 0 < held < size, "the client finished before it could be killed"
    code, lines, err = run([link, str(path), "--quiet"], state)
    assert code == 0, err
    assert lines == [f"OK {sha} {size} {path}"]
    # Everything the gateway read before the kill was kept: nothing was sent twice.
    assert tus_bytes_received(gateway) == size
    files = receipts(link)
    assert [f["sha256"] for f in files] == [sha]
