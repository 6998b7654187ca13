"""Gateways that scan every finished file with the session's clamd.

The browser fixtures are the browser tests' own (Debian's Chromium through
Playwright), imported so the browser upload path is scanned too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import browser, playwright_session  # noqa: F401 - fixtures
from tests.support.clamd import ClamdServer
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway


@pytest.fixture
def scanning_gateway(tmp_path: Path, clamd: ClamdServer) -> Iterator[GatewayProcess]:
    """A gateway on the embedded defaults with ``GATEWAY_CLAMD`` at a live clamd."""
    workdir = tmp_path / "gw"
    proc = start_gateway(workdir, gateway_env(workdir, GATEWAY_CLAMD=clamd.tcp_address))
    yield proc
    proc.kill()
