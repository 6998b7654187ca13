"""``bench.page_client.upload_with_page``: one file through the page, as the benchmark runs it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bench.page_client import upload_with_page
from tests.browser.conftest import CHROMIUM
from tests.support.ci import missing_tool
from tests.support.gateway import GatewayProcess


def test_one_file_through_the_page_is_verified_and_measured(
    gateway_file: GatewayProcess, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        missing_tool(f"{CHROMIUM} is missing (Debian package 'chromium')")
    path = tmp_path / "bench.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    result = upload_with_page(gateway_file.link("8800"), path, str(CHROMIUM))
    assert set(result) == {
        "seconds", "sha256", "longest_task_ms", "peak_js_heap_bytes", "parts", "rtt_ms"
    }  # fmt: skip
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["seconds"] > 0
    assert result["longest_task_ms"] >= 0  # 0: no task of 50 ms or more
    assert result["peak_js_heap_bytes"] > 0
    assert result["parts"] == 1  # 3 MiB: one upload, however far the gateway
    assert result["rtt_ms"] >= 0  # the page measured its round trip to the gateway
