"""What the upload client remembers between runs: unfinished uploads by file fingerprint.

A fingerprint is the absolute path, size, modification time and the SHA-256
of the first and last MiB: cheap to compute for a 100 GiB file, and it
changes when the file does, so a changed file starts over instead of
resuming into a corrupt result. The state file is JSON, rewritten
atomically (temp file + rename) under an advisory lock, so parallel runs
and a kill mid-write never leave it broken.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

EDGE = 1024 * 1024


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/upload-gateway``, else ``~/.local/state/upload-gateway``."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "upload-gateway"


def fingerprint(path: Path, endpoint: str) -> str:
    """Identity of (this file as it is now, this upload link)."""
    absolute = path.resolve()
    stat = absolute.stat()
    digest = hashlib.sha256()
    for part in (str(absolute), str(stat.st_size), str(stat.st_mtime_ns), endpoint):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    with open(absolute, "rb") as fh:
        digest.update(hashlib.sha256(fh.read(EDGE)).digest())
        fh.seek(max(0, stat.st_size - EDGE))
        digest.update(hashlib.sha256(fh.read(EDGE)).digest())
    return digest.hexdigest()


class StateFile:
    """A JSON map fingerprint -> {"url": upload URL, ...}, or for a file sent in streams
    {"parts": [{"url", "start", "end"}, ...], "final": URL, ...} (see :mod:`.streams`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "uploads.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / "uploads.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._locked():
            entry = self._read().get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self._locked():
            data = self._read()
            data[key] = entry
            self._write(data)

    def remember(self, key: str, path: Path, size: int, entry: dict[str, Any]) -> None:
        """:meth:`put` ``entry`` with which file it is about, its size and when."""
        about = {"file": str(path.resolve()), "size": size, "at": time.time()}
        self.put(key, {**entry, **about})

    def drop(self, key: str) -> None:
        with self._locked():
            data = self._read()
            if data.pop(key, None) is not None:
                self._write(data)
