"""Other S3 implementations for the compatibility tests: Swift (s3api) and Ceph RGW.

Both come from Debian packages and are started by the project's own scripts,
``deploy/compat/swift.sh`` and ``deploy/compat/rgw.sh`` (usable by hand too):
``SCRIPT start DIR`` boots the server on free loopback ports with everything
in DIR and prints ``export AWS_...=...`` lines; ``SCRIPT stop DIR`` stops what
it started. :class:`CompatServer` wraps one such server with the same surface
as :class:`tests.support.seaweed.SeaweedServer` (``endpoint_url``, keys,
``env()``, ``client()``, ``make_bucket()``), so store tests can take either.

The session fixtures ``swift_s3`` and ``rgw_s3`` boot each server once per
test session. Without the Debian packages they skip on a developer machine
and fail when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
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

__all__ = ["SERVERS", "CompatServer", "Flavor", "rgw_s3", "start_compat", "swift_s3"]

SCRIPTS = Path(__file__).resolve().parents[2] / "deploy" / "compat"
START_TIMEOUT = 240.0
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Flavor:
    """One S3 implementation: its start script and what it needs installed."""

    name: str
    script: Path
    tools: tuple[str, ...]  # executables that must exist
    packages: str  # the Debian packages that bring them


SERVERS = {
    "swift": Flavor(
        "swift",
        SCRIPTS / "swift.sh",
        (
            "swift-proxy-server",
            "swift-account-server",
            "swift-container-server",
            "swift-object-server",
            "swift-ring-builder",
        ),
        "swift-proxy swift-account swift-container swift-object",
    ),
    "rgw": Flavor(
        "rgw",
        SCRIPTS / "rgw.sh",
        ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"),
        "ceph-mon ceph-osd radosgw",
    ),
}


def _which(tool: str) -> str | None:
    """Daemons live in /usr/bin or /usr/sbin; the latter is not on every PATH."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/usr/bin"
    return shutil.which(tool, path=path)


def missing_tools(flavor: Flavor) -> list[str]:
    return [tool for tool in flavor.tools if _which(tool) is None]


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


@dataclass
class CompatServer(S3Endpoint):
    """A running Swift or RGW, as its start script reported it."""

    flavor: Flavor
    workdir: Path
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"

    @property
    def name(self) -> str:
        return self.flavor.name

    def log_tail(self, lines: int = 40) -> str:
        tails = []
        for log in sorted((self.workdir / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"== {log.name}\n" + "\n".join(text))
        return "\n".join(tails) or "(no logs)"

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(self.flavor.script), "stop", str(self.workdir)],
            env=_script_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def __enter__(self) -> CompatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_exports(text: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines (as the scripts print them) to a dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            found[name.strip()] = value.strip()
    return found


def _probe(server: CompatServer) -> str | None:
    """None once a signed bucket create, put and delete round-trip, else why not."""
    client = server.client()
    return round_trip(client)


def start_compat(flavor: Flavor, workdir: Path, *, timeout: float = START_TIMEOUT) -> CompatServer:
    """Run ``SCRIPT start workdir``; wait until a signed S3 request works."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["bash", str(flavor.script), "start", str(workdir)],
        env=_script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    exports = parse_exports(result.stdout)
    if result.returncode != 0 or "AWS_ENDPOINT_URL_S3" not in exports:
        subprocess.run(
            ["bash", str(flavor.script), "stop", str(workdir)],
            env=_script_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        raise RuntimeError(
            f"{flavor.script.name} start failed ({result.returncode}):\n"
            f"{result.stderr[-4000:]}\n{result.stdout[-2000:]}"
        )
    server = CompatServer(
        flavor=flavor,
        workdir=workdir,
        endpoint_url=exports["AWS_ENDPOINT_URL_S3"],
        access_key=exports["AWS_ACCESS_KEY_ID"],
        secret_key=exports["AWS_SECRET_ACCESS_KEY"],
        region=exports.get("AWS_REGION", "us-east-1"),
    )
    try:
        deadline = time.monotonic() + PROBE_TIMEOUT
        while (reason := _probe(server)) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{flavor.name} S3 at {server.endpoint_url} not ready ({reason}); "
                    f"logs:\n{server.log_tail()}"
                )
            time.sleep(0.3)
    except BaseException:
        server.stop()
        raise
    return server


# -- pytest fixtures ----------------------------------------------------------------


def _session_server(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    flavor = SERVERS[name]
    missing = missing_tools(flavor)
    if missing:
        message = (
            f"{name} compatibility tests need {', '.join(missing)} "
            f"(apt-get install {flavor.packages})"
        )
        missing_tool(message)
    server = start_compat(flavor, tmp_path_factory.mktemp(name))
    print(f"\n{name}: S3 ready at {server.endpoint_url}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def swift_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    """One OpenStack Swift (s3api + tempauth) for the whole test session."""
    yield from _session_server("swift", tmp_path_factory)


@pytest.fixture(scope="session")
def rgw_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatServer]:
    """One single-node Ceph RGW for the whole test session."""
    yield from _session_server("rgw", tmp_path_factory)
