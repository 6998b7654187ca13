"""The machine and versions a run measured, for the results file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _mem_total() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _command_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _seaweed_version(line: str) -> str:
    """``version 8000GB 4.48 <channel> linux amd64`` -> ``4.48 (8000GB build)``."""
    words = line.split()
    number = next((w for w in words if w[:1].isdigit() and "." in w), None)
    size = next((w for w in words if w.endswith("GB")), None)
    if number is None:
        return line
    return f"{number} ({size} build)" if size else number


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _npm(name: str) -> str:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((REPO / "node_modules" / name / "package.json").read_text())
        return str(data.get("version", "unknown"))
    return "absent"


def machine_info() -> dict[str, str]:
    load = os.getloadavg()
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": _mem_total(),
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "upload-gateway": _dist("upload-gateway"),
        "starlette / uvicorn": f"{_dist('starlette')} / {_dist('uvicorn')}",
        "httptools / uvloop": f"{_dist('httptools')} / {_dist('uvloop')}",
        "boto3 / botocore": f"{_dist('boto3')} / {_dist('botocore')}",
        "SeaweedFS": _seaweed_version(
            _command_version([str(Path(sys.executable).with_name("weed")), "version"])
        ),
        "curl": _command_version(["curl", "--version"]).split(" (")[0],
        "node": _command_version(["node", "--version"]),
        "tus-js-client / @tus/server / @tus/s3-store": " / ".join(
            _npm(n) for n in ("tus-js-client", "@tus/server", "@tus/s3-store")
        ),
        "tuspyserver / fastapi": f"{_dist('tuspyserver')} / {_dist('fastapi')}",
    }
