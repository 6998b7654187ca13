"""The gateway as a real process (uvicorn on a free port), for tests and benchmarks.

:func:`start_gateway` runs ``python -m gateway serve`` with the environment
it is given, waits for ``/healthz`` and returns a handle that can mint links
(with the same secret, in-process), SIGKILL, SIGTERM and restart the process
on the same port and data dir. Fixtures at the bottom give a gateway on the
embedded defaults (file store, local tickets) and one on SeaweedFS.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.links import Links
from gateway.settings import Settings, load_settings

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    env: dict[str, str]
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    starts: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"gateway-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    def link(self, ticket: str = "1001", **kwargs: Any) -> str:
        """Mint an upload link with the gateway's own secret (as `gateway link` does)."""
        return Links(self.settings).mint(ticket, **kwargs).url

    def start(self) -> GatewayProcess:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--grace", "10"],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not become healthy:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (graceful shutdown)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait(10)
        self.process = None
        return code

    def restart(self) -> GatewayProcess:
        self.kill()
        return self.start()

    stop = terminate

    @property
    def pid(self) -> int:
        assert self.process is not None, "the gateway is not running"
        return self.process.pid

    def _status_bytes(self, field: str) -> int:
        """A memory figure (``VmRSS``, ``VmHWM``) of the process, from /proc, in bytes."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
        return 0

    def rss_bytes(self) -> int:
        """Current resident memory of the gateway process."""
        return self._status_bytes("VmRSS")

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the gateway process."""
        return self._status_bytes("VmHWM")


def gateway_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a gateway process: PATH and the venv, nothing from the caller."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "GATEWAY_DATA_DIR": str(workdir / "data"),
        "GATEWAY_SECRET": secrets.token_urlsafe(40),
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_STAFF_TOKEN": "staff-" + secrets.token_hex(8),
    }
    env.update(extra)
    return env


def start_gateway(
    workdir: Path, env: dict[str, str] | None = None, port: int | None = None
) -> GatewayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = dict(env or gateway_env(workdir))
    env.setdefault("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{port}")
    return GatewayProcess(env=env, port=port, workdir=workdir).start()


# -- pytest fixtures ----------------------------------------------------------------


@pytest.fixture
def gateway_file(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway on the embedded defaults: file store, local tickets."""
    proc = start_gateway(tmp_path / "gw", gateway_env(tmp_path / "gw"))
    yield proc
    proc.kill()


@pytest.fixture
def gateway_s3(tmp_path: Path, seaweed: Any, s3_bucket: str) -> Iterator[GatewayProcess]:
    """A gateway on SeaweedFS (fresh bucket) with local tickets."""
    env = gateway_env(
        tmp_path / "gw", GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=s3_bucket, **seaweed.env()
    )
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


@pytest.fixture(params=["file", "s3"])
def gateway_any(request: pytest.FixtureRequest) -> GatewayProcess:
    """Each test runs against both stores."""
    name = "gateway_file" if request.param == "file" else "gateway_s3"
    proc: GatewayProcess = request.getfixturevalue(name)
    return proc


@pytest.fixture
def proxied_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Any]]:
    """A gateway reached only through the network proxy (25 ms each way, 40 Mbit/s a
    connection): links and tus URLs name the proxy. Yields the gateway and the proxy."""
    from bench.netproxy import ProxyThread

    port, listen = free_port(), free_port()
    workdir = tmp_path / "gw"
    env = gateway_env(workdir, GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{listen}")
    with ProxyThread(port, listen=listen, delay_ms=25, rate_mbit=40, record=False) as proxy:
        proc = start_gateway(workdir, env, port=port)
        try:
            yield proc, proxy
        finally:
            proc.kill()


def tus_bytes_received(proc: GatewayProcess) -> float:
    """The gateway's count of tus body bytes it took in (``/metrics``)."""
    text = httpx.get(f"{proc.url}/metrics").text
    for line in text.splitlines():
        if line.startswith('gateway_bytes_received_total{protocol="tus"}'):
            return float(line.split()[-1])
    return 0.0


def run_sweep(proc: GatewayProcess, timeout: float = 60.0) -> str:
    """Run ``gateway sweep`` with the gateway's environment; its report (stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "sweep"], env=proc.env, cwd=proc.workdir,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def staff_headers(proc: GatewayProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {proc.env['GATEWAY_STAFF_TOKEN']}"}


def ticket_comments(
    proc: GatewayProcess, ticket: str, *, wait_for: int = 0, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The local ticket's comments as JSON, waiting until at least ``wait_for`` exist."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(
            f"{proc.url}/tickets/{ticket}",
            headers={"Accept": "application/json", **staff_headers(proc)},
        )
        response.raise_for_status()
        comments: list[dict[str, Any]] = response.json()["comments"]
        if len(comments) >= wait_for or time.monotonic() > deadline:
            return comments
        time.sleep(0.1)
