"""The upload client's memory of unfinished uploads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gateway.client.state import StateFile, fingerprint, state_dir


def test_state_dir_follows_xdg(tmp_path: Path) -> None:
    assert state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "upload-gateway"
    assert state_dir({}) == Path.home() / ".local" / "state" / "upload-gateway"
    assert state_dir({"XDG_STATE_HOME": "relative"}).is_absolute()


def test_fingerprint_changes_with_the_file_and_the_link(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024))
    first = fingerprint(path, "http://gw/u/a")
    assert fingerprint(path, "http://gw/u/a") == first
    assert fingerprint(path, "http://gw/u/b") != first
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime
    assert fingerprint(path, "http://gw/u/a") != first  # the last MiB tells


def test_state_file_round_trip_and_atomic_json(tmp_path: Path) -> None:
    states = StateFile(tmp_path / "s")
    assert states.get("k") is None
    states.put("k", {"url": "http://x/u/t/tus/abc"})
    states.put("j", {"url": "http://x/u/t/tus/def"})
    assert states.get("k") == {"url": "http://x/u/t/tus/abc"}
    states.drop("k")
    assert json.loads(states.path.read_text()) == {"j": {"url": "http://x/u/t/tus/def"}}
    states.path.write_text("{broken")
    assert states.get("j") is None  # a damaged file is treated as empty, not a crash
    assert not list(states.directory.glob("*.tmp"))


def test_remember_says_which_file_and_when(tmp_path: Path) -> None:
    states = StateFile(tmp_path / "s")
    path = tmp_path / "f.bin"
    path.write_bytes(b"12345")
    states.remember("k", path, 5, {"url": "http://x/u/t/tus/abc"})
    entry = states.get("k")
    assert entry is not None
    assert entry["url"] == "http://x/u/t/tus/abc"
    assert entry["file"] == str(path.resolve()) and entry["size"] == 5
    assert isinstance(entry["at"], float)
