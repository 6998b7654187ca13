"""The page's vendored hash-wasm is the pinned release, byte for byte, with its licence.

``package.json`` pins hash-wasm to one exact version; ``npm ci`` puts that
release in ``node_modules``. The file shipped in the Python package under
``gateway/static/vendor/hash-wasm/`` must be exactly its ``dist`` file, so
what partners' browsers run is what the pinned release publishes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.http import assets
from tests.support.ci import missing_tool

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "gateway" / "static" / "vendor" / "hash-wasm"
RELEASE = ROOT / "node_modules" / "hash-wasm"
FILES = ["dist/sha256.umd.min.js", "LICENSE"]


def _installed() -> Path:
    if not (RELEASE / "package.json").exists():
        missing_tool("node_modules/hash-wasm is missing (run `npm ci`)")
    return RELEASE


def test_hash_wasm_is_pinned_to_one_exact_version() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["hash-wasm"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"not an exact version: {pinned!r}"
    installed = json.loads((_installed() / "package.json").read_text())["version"]
    assert installed == pinned
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/hash-wasm"]["version"] == pinned


@pytest.mark.parametrize("name", FILES)
def test_shipped_file_is_the_pinned_release_file(name: str) -> None:
    shipped = VENDOR / Path(name).name
    assert shipped.read_bytes() == (_installed() / name).read_bytes()


def test_the_vendored_script_is_served_and_its_licence_ships() -> None:
    assert "vendor/hash-wasm/sha256.umd.min.js" in assets.catalogue()
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
