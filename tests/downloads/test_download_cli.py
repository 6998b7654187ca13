"""``gateway download``: pieces on several connections, resume, verification, ticket mode."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.downloads.conftest import TICKET, MiB, Stocked
from tests.support.faultproxy import FaultProxy
from tests.support.gateway import GatewayProcess, ticket_comments

DUMP = "dump.bin"


def gateway_download(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "download", "--quiet", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def link_of(stocked: Stocked, name: str) -> tuple[str, str]:
    """A fresh download link of the file named ``name`` and its SHA-256."""
    for file in stocked.listing():
        if file["filename"] == name and file["download_url"]:
            return file["download_url"], file["sha256"]
    raise AssertionError(f"no downloadable {name}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def proxy(stocked: Stocked) -> Iterator[FaultProxy]:
    """A fault proxy in front of the gateway (download links are rewritten to it)."""
    with FaultProxy(stocked.proc.url).start() as running:
        yield running


def pieces(state: dict) -> int:
    return -(-state["size"] // state["piece_size"])


def via(proxy: FaultProxy, url: str) -> str:
    parts = urlsplit(url)
    return f"{proxy.url}{parts.path}"


def test_download_verifies_and_names_the_file(stocked: Stocked, out: Path) -> None:
    url, sha = link_of(stocked, DUMP)
    done = gateway_download(url, "-o", str(out), "--connections", "4")
    assert done.returncode == 0, done.stderr
    target = out / DUMP
    assert done.stdout.splitlines() == [f"OK {sha} {40 * MiB} {target}"]
    assert sha256_file(target) == sha
    assert sorted(os.listdir(out)) == [DUMP]  # no partial file or state left
    again = gateway_download(url, "-o", str(out))
    assert again.returncode == 0 and again.stdout.startswith(f"OK {sha} ")


def test_ranges_on_several_connections(stocked: Stocked, proxy: FaultProxy, out: Path) -> None:
    url, sha = link_of(stocked, DUMP)
    done = gateway_download(via(proxy, url), "-o", str(out), "--connections", "3")
    assert done.returncode == 0, done.stderr
    # 40 MiB on 3 connections: 4 MiB pieces (about four per connection), one GET each.
    assert proxy.count("GET", "/files/") == 10
    assert sha256_file(out / DUMP) == sha


def _interrupted(stocked: Stocked, proxy: FaultProxy, out: Path) -> tuple[str, str, dict]:
    """Start a slowed-down download, SIGKILL it once some but not all pieces are in."""
    url, sha = link_of(stocked, DUMP)
    proxy.inject("stall", count=None, method="GET", match="/files/", stall=0.4)
    state_file = out / f"{DUMP}.part.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "download", "--quiet", via(proxy, url),
         "-o", str(out), "--connections", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    state: dict = {}
    try:
        while time.monotonic() < deadline:
            if state_file.exists():
                state = json.loads(state_file.read_text())
                if len(state["done"]) >= 3:
                    break
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
        else:
            raise AssertionError("the download made no progress")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    proxy.clear()
    state = json.loads(state_file.read_text())
    assert 3 <= len(state["done"]) < pieces(state), state
    assert not (out / DUMP).exists()
    return url, sha, state


def test_interrupted_download_resumes(stocked: Stocked, proxy: FaultProxy, out: Path) -> None:
    url, sha, state = _interrupted(stocked, proxy, out)
    # The same link, marked so that only this run's requests are counted.
    done = gateway_download(via(proxy, url) + "?run=2", "-o", str(out), "--connections", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK {sha} {40 * MiB} ")
    assert sha256_file(out / DUMP) == sha
    # Only the pieces the first run had not finished were fetched again.
    assert proxy.count("GET", "run=2") == pieces(state) - len(state["done"])
    assert sorted(os.listdir(out)) == [DUMP]


def test_a_fresh_link_resumes_too(stocked: Stocked, proxy: FaultProxy, out: Path) -> None:
    _url, sha, state = _interrupted(stocked, proxy, out)
    fresh, _ = link_of(stocked, DUMP)
    done = gateway_download(via(proxy, fresh) + "?run=2", "-o", str(out), "--connections", "2")
    assert done.returncode == 0 and sha256_file(out / DUMP) == sha
    assert proxy.count("GET", "run=2") == pieces(state) - len(state["done"])


def test_a_corrupted_byte_is_caught_and_fetched_again(
    stocked: Stocked, proxy: FaultProxy, out: Path
) -> None:
    url, sha, state = _interrupted(stocked, proxy, out)
    piece = int(sorted(state["done"], key=int)[-1])
    position = piece * state["piece_size"] + 12345
    part = out / f"{DUMP}.part"
    with open(part, "r+b") as fh:
        fh.seek(position)
        old = fh.read(1)
        fh.seek(position)
        fh.write(bytes([old[0] ^ 0x40]))
    done = gateway_download(via(proxy, url) + "?run=2", "-o", str(out), "--connections", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK {sha} ")
    assert sha256_file(out / DUMP) == sha
    # The missing pieces plus the damaged one.
    assert proxy.count("GET", "run=2") == pieces(state) - len(state["done"]) + 1


def test_cut_responses_are_retried(stocked: Stocked, proxy: FaultProxy, out: Path) -> None:
    url, sha = link_of(stocked, DUMP)
    proxy.inject("truncate", count=3, method="GET", match="/files/")
    proxy.inject("error", count=2, method="GET", match="/files/", status=503)
    done = gateway_download(via(proxy, url), "-o", str(out), "--connections", "4")
    assert done.returncode == 0, done.stderr
    assert proxy.injected["truncate"] == 3 and proxy.injected["error"] == 2
    assert sha256_file(out / DUMP) == sha


def test_bad_links_fail_with_a_reason(stocked: Stocked, out: Path) -> None:
    url, sha = link_of(stocked, DUMP)
    base, _, name = url.rpartition("/")
    tampered = base[:-3] + ("AAA" if not base.endswith("AAA") else "BBB") + "/" + name
    done = gateway_download(url, tampered, "-o", str(out), "--retries", "1")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"OK {sha} {40 * MiB} {out / DUMP}",
        f"FAILED http-403 {tampered}",
    ]


def test_ticket_mode_fetches_every_stored_file(stocked: Stocked, out: Path) -> None:
    proc = stocked.proc
    done = gateway_download(
        "--ticket", TICKET, "--gateway", proc.url, "-o", str(out),
        env={"GATEWAY_STAFF_TOKEN": proc.env["GATEWAY_STAFF_TOKEN"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("OK ") for line in lines)
    assert "eicar.com" in done.stderr and "quarantined" in done.stderr
    assert sorted(os.listdir(out)) == ["dump.bin", "notes (2).txt", "notes.txt"]
    by_sha = stocked.by_sha()
    for name in os.listdir(out):
        assert sha256_file(out / name) in by_sha


def test_ticket_mode_needs_the_staff_token(stocked: Stocked, out: Path) -> None:
    proc = stocked.proc
    done = gateway_download(
        "--ticket", TICKET, "--gateway", proc.url, "-o", str(out),
        env={"GATEWAY_STAFF_TOKEN": "wrong"},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.strip() == f"FAILED http-401 {proc.url}/api/tickets/{TICKET}/files"
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "download", "--ticket", TICKET, "--gateway", proc.url],
        capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "GATEWAY_STAFF_TOKEN"},
    )  # fmt: skip
    assert missing.returncode == 2 and "GATEWAY_STAFF_TOKEN" in missing.stderr


def test_download_from_the_file_store(gateway_file: GatewayProcess, out: Path) -> None:
    data = os.urandom(25 * MiB + 3)
    import httpx

    response = httpx.put(f"{gateway_file.link('42')}/one.bin", content=data, timeout=60)
    assert response.status_code == 201
    comments = ticket_comments(gateway_file, "42", wait_for=1)
    url = comments[0]["body"].split("Download: ", 1)[1].split()[0]
    done = gateway_download(url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "one.bin").read_bytes() == data
