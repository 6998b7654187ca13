"""A real clamd on loopback for the scanner tests.

No signature database can be downloaded for the tests, and clamd refuses to
start without one, so the database is a single ``.ndb`` line that matches the
EICAR test string anywhere in a file. clamd reports it as
``Eicar-Test-Signature.UNOFFICIAL`` (it marks every unsigned database so).

``start_clamd`` writes its own clamd.conf into a work dir (TCP on a free port,
a unix socket, log, pid, temp dir and database all inside it), starts clamd in
the foreground in its own process group, and waits until it answers PING.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ci import missing_tool

INSTALL_HINT = "apt-get install -y clamav-daemon clamav"

# Assembled from two halves so this source file is not itself flagged by a
# virus scanner on a developer's machine.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE_NAME = "Eicar-Test-Signature"
#: What clamd reports for an EICAR match from this unsigned database.
EICAR_SIGNATURE = f"{SIGNATURE_NAME}.UNOFFICIAL"

START_TIMEOUT = 60.0


def find_clamd() -> str | None:
    """clamd lives in /usr/sbin on Debian, which is not on every user's PATH."""
    found = shutil.which("clamd")
    if found:
        return found
    for candidate in ("/usr/sbin/clamd", "/usr/local/sbin/clamd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ClamdServer:
    process: subprocess.Popen[bytes]
    workdir: Path
    port: int
    socket_path: str
    log_path: Path

    @property
    def tcp_address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def write_config(
    workdir: Path,
    port: int,
    *,
    stream_max_length: str = "4000M",
    extra: dict[str, str] | None = None,
) -> Path:
    """Write a database with the EICAR signature and a clamd.conf using it."""
    db = workdir / "db"
    db.mkdir(parents=True, exist_ok=True)
    (db / "eicar.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{EICAR.hex()}\n")
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    options = {
        "Foreground": "yes",
        "TCPAddr": "127.0.0.1",
        "TCPSocket": str(port),
        "LocalSocket": str(workdir / "clamd.sock"),
        "FixStaleSocket": "yes",
        "DatabaseDirectory": str(db),
        "TemporaryDirectory": str(tmp),
        "LogFile": str(workdir / "clamd.log"),
        "LogTime": "yes",
        "PidFile": str(workdir / "clamd.pid"),
        "ScanArchive": "yes",
        "StreamMaxLength": stream_max_length,
        "MaxScanSize": "4000M",
        "MaxFileSize": "4000M",
        # Without this, a file past MaxFileSize/MaxScanSize comes back "OK".
        "AlertExceedsMax": "yes",
        "SelfCheck": "0",
    }
    options.update(extra or {})
    conf = workdir / "clamd.conf"
    conf.write_text("".join(f"{key} {value}\n" for key, value in options.items()))
    return conf


def ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
    except OSError:
        return False


def start_clamd(
    workdir: Path,
    *,
    stream_max_length: str = "4000M",
    extra: dict[str, str] | None = None,
) -> ClamdServer:
    """Start clamd with its own config in ``workdir`` and wait until it answers PING."""
    binary = find_clamd()
    if binary is None:
        raise FileNotFoundError(f"clamd is not installed ({INSTALL_HINT})")
    workdir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a free port can be taken before clamd binds it
        port = free_port()
        conf = write_config(workdir, port, stream_max_length=stream_max_length, extra=extra)
        log_path = workdir / "clamd.log"
        log_path.unlink(missing_ok=True)
        with open(workdir / "clamd.stderr", "wb") as stderr:
            process = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        server = ClamdServer(process, workdir, port, str(workdir / "clamd.sock"), log_path)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if ping(port):
                return server
            time.sleep(0.05)
        server.stop()
        stderr_text = (workdir / "clamd.stderr").read_text(errors="replace")
        if process.returncode is not None and "bind" in (server.log_tail() + stderr_text):
            continue
        raise RuntimeError(
            f"clamd did not answer PING on 127.0.0.1:{port} within {START_TIMEOUT:g}s "
            f"(exit code {process.returncode}); log tail:\n{server.log_tail()}\n"
            f"stderr:\n{stderr_text[-2000:]}"
        )
    raise RuntimeError(f"clamd could not bind a free port; log tail:\n{server.log_tail()}")


def require_clamd() -> None:
    """Fail in CI, skip elsewhere, when clamd is not installed."""
    if find_clamd() is not None:
        return
    message = f"clamd is not installed; install it with: {INSTALL_HINT}"
    missing_tool(message)


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """One clamd for the whole session, with the EICAR signature and large limits."""
    require_clamd()
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    try:
        yield server
    finally:
        server.stop()
