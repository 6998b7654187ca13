"""Shared helpers for the deploy tests: repo paths, required tools, known settings."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from tests.support.ci import missing_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def missing(what: str) -> None:
    """Skip on a workstation, fail in CI: a lint that silently never runs is no lint."""
    missing_tool(f"{what} is not installed (pip install -e '.[test]')")


def tool(name: str) -> str:
    """Path of a command-line tool, preferring the one in this interpreter's venv."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        missing(name)
        raise AssertionError("unreachable")
    return found


def known_settings() -> set[str]:
    """Every GATEWAY_* variable the settings loader reads (the source of truth)."""
    source = (ROOT / "gateway" / "settings.py").read_text()
    names = set(re.findall(r'"(GATEWAY_[A-Z0-9_]+)"', source))
    assert "GATEWAY_DATA_DIR" in names, "settings.py no longer names its variables literally"
    return names


# Variables read by boto3 (S3 endpoint and credentials), not by our loader.
BOTO3_ENV = {
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
}
