"""``gateway upload``: completing, killed and re-run, output format, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.gateway import GatewayProcess
from tests.tus.support import TUS, random_file, receipts

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


def test_killed_and_rerun_resumes(gateway_any: GatewayProcess, tmp_path: Path) -> None:
    link = gateway_any.link("503")
    path = tmp_path / "resume.bin"
    size = 40 * MiB
    sha = random_file(path, size)
    state = tmp_path / "st"
    state_file = state / "upload-gateway" / "uploads.json"
    proc = cli([link, str(path), "--chunk-size", "1MiB", "--quiet"], state)
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
