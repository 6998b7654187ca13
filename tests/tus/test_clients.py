"""Outside tus clients nobody here wrote: tuspy and tus-js-client, uploading and resuming."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from tests.support.ci import missing_tool
from tests.support.gateway import GatewayProcess
from tests.tus.support import REPO, random_file, receipts, require_tool

MiB = 1024 * 1024
SCRIPT = Path(__file__).with_name("tus_js_upload.js")


def tuspy_upload(endpoint: str, path: Path, storage: Path, chunk: int, chunks: int | None) -> str:
    """Upload with tuspy, stopping after ``chunks`` chunks if given; returns the upload URL."""
    store = FileStorage(str(storage))
    try:
        uploader = tus_client.TusClient(endpoint).uploader(
            str(path), chunk_size=chunk, metadata={"filename": path.name},
            store_url=True, url_storage=store,
        )  # fmt: skip
        if chunks is None:
            uploader.upload()
        else:
            for _ in range(chunks):
                uploader.upload_chunk()
        return str(uploader.url)
    finally:
        store.close()


def check_tuspy(proc: GatewayProcess, tmp_path: Path, size: int, chunk: int) -> None:
    link = proc.link("701")
    path = tmp_path / "tuspy.bin"
    sha = random_file(path, size)
    storage = tmp_path / "tuspy-urls.json"
    first = tuspy_upload(f"{link}/tus/", path, storage, chunk, chunks=2)
    assert not receipts(link)
    second = tuspy_upload(f"{link}/tus/", path, storage, chunk, chunks=None)
    assert second == first  # the same upload continued
    files = receipts(link)
    assert [(f["filename"], f["size"], f["sha256"]) for f in files] == [(path.name, size, sha)]
    assert files[0]["file_id"] == first.rsplit("/", 1)[-1]


def test_tuspy_uploads_and_resumes(gateway_any: GatewayProcess, tmp_path: Path) -> None:
    check_tuspy(gateway_any, tmp_path, 40 * MiB + 123, 8 * MiB)


def node_client() -> str:
    node = require_tool("node")
    if not (REPO / "node_modules" / "tus-js-client").is_dir():
        message = "tus-js-client is not installed (run npm install at the repository root)"
        missing_tool(message)
    return node


def run_js(node: str, endpoint: str, path: Path, storage: Path, chunk: int,
           kill_at: int | None = None, timeout: float = 600, parallel: int = 1,
           kill_after_chunks: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run the tus-js-client script; with ``kill_at``, SIGKILL it once that offset is accepted
    (``kill_after_chunks``: once that many chunks were accepted, over all partial uploads)."""
    proc = subprocess.Popen(
        [node, str(SCRIPT), endpoint, str(path), str(storage), str(chunk), str(parallel)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            events.append(json.loads(line))
            if (kill_at is not None and events[-1].get("offset", 0) >= kill_at) or (
                kill_after_chunks is not None
                and events[-1].get("chunks", 0) >= kill_after_chunks
                and _remembers_partials(storage)
            ):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if kill_at is None and kill_after_chunks is None:
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return events


def _remembers_partials(storage: Path) -> bool:
    """The client saved its partial uploads' URLs (it does so once all of them exist)."""
    try:
        return "parallelUploadUrls" in storage.read_text()
    except FileNotFoundError:
        return False


def check_tus_js(proc: GatewayProcess, tmp_path: Path, size: int, chunk: int) -> None:
    node = node_client()
    link = proc.link("702")
    path = tmp_path / "js.bin"
    sha = random_file(path, size)
    storage = tmp_path / "js-urls.json"
    first = run_js(node, f"{link}/tus/", path, storage, chunk, kill_at=2 * chunk)
    assert first[-1]["event"] == "chunk" and first[-1]["offset"] < size
    assert not receipts(link)
    second = run_js(node, f"{link}/tus/", path, storage, chunk)
    url = first[0]["url"]
    assert {"event": "resuming", "url": url} in second
    assert second[-1]["event"] == "success" and second[-1]["url"] == url
    files = receipts(link)
    assert [(f["filename"], f["size"], f["sha256"]) for f in files] == [(path.name, size, sha)]
    assert files[0]["file_id"] == second[-1]["fileId"] == url.rsplit("/", 1)[-1]


def test_tus_js_client_uploads_and_resumes(gateway_any: GatewayProcess, tmp_path: Path) -> None:
    check_tus_js(gateway_any, tmp_path, 40 * MiB + 7, 8 * MiB)


def test_tus_js_client_parallel_uploads_resume(gateway_any: GatewayProcess, tmp_path: Path) -> None:
    """tus-js-client's parallelUploads: three partial uploads at once, killed, resumed, joined."""
    node = node_client()
    link = gateway_any.link("703")
    path = tmp_path / "parallel.bin"
    size = 40 * MiB + 7
    sha = random_file(path, size)
    storage = tmp_path / "js-urls.json"
    endpoint = f"{link}/tus/"
    first = run_js(node, endpoint, path, storage, 4 * MiB, parallel=3, kill_after_chunks=3)
    assert first[-1]["event"] == "chunk"
    assert not receipts(link)
    second = run_js(node, endpoint, path, storage, 4 * MiB, parallel=3)
    assert second[0]["event"] == "resuming"
    sent = sum(1 for e in second if e["event"] == "chunk")
    assert sent < -(-size // (4 * MiB)) + 3  # resumed: fewer chunks than a whole upload
    assert second[-1]["event"] == "success" and second[-1]["fileId"]
    files = receipts(link)
    assert [(f["filename"], f["size"], f["sha256"]) for f in files] == [(path.name, size, sha)]
    assert files[0]["file_id"] == second[-1]["fileId"] == second[-1]["url"].rsplit("/", 1)[-1]


@pytest.mark.slow
def test_one_gib_with_both_clients_on_seaweedfs(gateway_s3: GatewayProcess, tmp_path: Path) -> None:
    check_tuspy(gateway_s3, tmp_path, 1024 * MiB, 64 * MiB)
    (tmp_path / "tuspy.bin").unlink()
    check_tus_js(gateway_s3, tmp_path, 1024 * MiB, 64 * MiB)
