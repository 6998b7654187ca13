"""The image's entrypoint, run the way the Dockerfile declares it.

No container engine runs here, so the test reads the runtime stage of the
Dockerfile (ENTRYPOINT, CMD, ENV, WORKDIR, EXPOSE, HEALTHCHECK) and runs that
command with that environment directly. Two substitutions, both stated:
the image's venv (/opt/venv) is this checkout's venv, and the declared
``--host``/``--port`` become loopback and a free port (port 8000 may be in
use on a shared machine); that the declared port agrees with EXPOSE and the
healthcheck is checked separately.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.deploy.test_dockerfile import parse
from tests.ops.support import sha256
from tests.support.gateway import free_port

VENV_BIN = Path(sys.executable).parent
# What the python:*-slim base image sets, underneath the Dockerfile's own ENV.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Image:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    expose: list[int]
    healthcheck: list[str]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image() -> Image:
    _, stages = parse()
    runtime = stages[-1]
    env = dict(BASE_ENV)
    for args in runtime.all("ENV"):
        for token in shlex.split(args):
            name, _, raw = token.partition("=")
            env[name] = _VAR.sub(lambda m: env.get(m[1] or m[2], ""), raw)
    [healthcheck] = runtime.all("HEALTHCHECK")
    _, _, probe = healthcheck.partition(" CMD ")
    return Image(
        entrypoint=_exec_form(runtime.all("ENTRYPOINT")[-1]),
        cmd=_exec_form(runtime.all("CMD")[-1]),
        env=env,
        workdir=runtime.all("WORKDIR")[-1],
        expose=[int(p.split("/")[0]) for args in runtime.all("EXPOSE") for p in args.split()],
        healthcheck=_exec_form(probe),
    )


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _with_option(command: list[str], name: str, value: str) -> list[str]:
    out = list(command)
    out[out.index(name) + 1] = value
    return out


def _local_env(img: Image, data: Path) -> dict[str, str]:
    """The image's environment on this machine: our venv for /opt/venv, a temp data dir."""
    env = {k: v.replace("/opt/venv/bin", str(VENV_BIN)) for k, v in img.env.items()}
    assert env["GATEWAY_DATA_DIR"] == img.workdir, "the data dir is the working directory"
    env["GATEWAY_DATA_DIR"] = str(data)
    env["HOME"] = str(data)
    return env


def test_the_declared_port_is_exposed_and_probed() -> None:
    img = image()
    port = int(_option(img.cmd, "--port"))
    assert img.expose == [port]
    assert f"127.0.0.1:{port}/healthz" in " ".join(img.healthcheck)
    assert img.entrypoint == ["gateway"]
    assert img.cmd[0] == "serve"


def test_the_image_command_serves_uploads_and_passes_its_healthcheck(tmp_path: Path) -> None:
    img = image()
    data = tmp_path / "data"
    data.mkdir()
    env = _local_env(img, data)
    port = free_port()
    declared = int(_option(img.cmd, "--port"))
    command = _with_option(_with_option(img.cmd, "--port", str(port)), "--host", "127.0.0.1")
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115 - the child writes it
    process = subprocess.Popen(
        img.entrypoint + command, env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no /healthz"
            time.sleep(0.1)

        # The image's own healthcheck command, aimed at this port.
        probe = [arg.replace(f":{declared}/", f":{port}/") for arg in img.healthcheck]
        assert subprocess.run(probe, env=env, cwd=data, timeout=30).returncode == 0

        # `gateway link`, as an operator runs it in the container, then a PUT through it.
        minted = subprocess.run(
            img.entrypoint + ["link", "--ticket", "42"],
            env=env, cwd=data, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert minted.returncode == 0, minted.stderr
        path = urlsplit(minted.stdout.strip().splitlines()[-1]).path
        body = os.urandom(100_000)
        response = httpx.put(f"{base}{path}/hello.bin", content=body, timeout=30)
        assert response.status_code == 201, response.text
        assert response.json()["sha256"] == sha256(body)
        # The embedded default keeps its state under the data dir and nowhere else.
        assert any(data.iterdir())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
    assert code == 0, (tmp_path / "gateway.log").read_text()


@pytest.mark.parametrize("command", [["gateway"], [sys.executable, "-m", "gateway"]])
def test_help_works_with_an_empty_environment(command: list[str], tmp_path: Path) -> None:
    if command == ["gateway"]:
        command = [str(VENV_BIN / "gateway")]
    result = subprocess.run(
        [*command, "--help"], env={}, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    for name in ("serve", "link", "upload", "sweep"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [("GATEWAY_MAX_UPLOAD", "lots"), ("GATEWAY_STORAGE", "ftp"), ("GATEWAY_LINK_TTL", "forever")],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(
    name: str, value: str, tmp_path: Path
) -> None:
    img = image()
    env = _local_env(img, tmp_path / "data")
    env[name] = value
    command = _with_option(img.cmd, "--port", str(free_port()))
    result = subprocess.run(
        img.entrypoint + _with_option(command, "--host", "127.0.0.1"),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert name in lines[0] and value in lines[0]
