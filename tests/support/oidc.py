"""A real OpenID Connect provider on loopback: ``oidc-provider-mock`` in its own process.

It serves discovery, JWKS (RS256), an authorization page where a browser
picks one of the predefined users (a button per user), and the token
endpoint that issues signed ID tokens with the user's claims. Any client id
and secret are accepted, so tests need no registration step.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ci import missing_tool
from tests.support.gateway import free_port

START_TIMEOUT = 30.0

#: Predefined users: allowed by domain, allowed by group, refused.
USERS: list[dict[str, Any]] = [
    {"sub": "alice", "email": "alice@support.example", "email_verified": True,
     "name": "Alice Agent"},
    {"sub": "bob", "email": "bob@contractor.example", "email_verified": True,
     "groups": ["tier2"]},
    {"sub": "mallory", "email": "mallory@elsewhere.example", "email_verified": True,
     "groups": ["sales"]},
]  # fmt: skip


@dataclass
class OidcProvider:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def gateway_env(self, **extra: str) -> dict[str, str]:
        """What a gateway needs to sign engineers in with this provider."""
        return {
            "GATEWAY_DOWNLOAD_AUTH": "oidc",
            "GATEWAY_OIDC_ISSUER": self.issuer,
            "GATEWAY_OIDC_CLIENT_ID": "upload-gateway",
            "GATEWAY_OIDC_CLIENT_SECRET": "not-checked-by-this-provider",
            "GATEWAY_OIDC_ALLOWED_DOMAINS": "support.example",
            "GATEWAY_OIDC_ALLOWED_GROUPS": "tier2,tier3",
            **extra,
        }


def start_provider(workdir: Path) -> OidcProvider:
    if importlib.util.find_spec("oidc_provider_mock") is None:
        missing_tool("oidc-provider-mock is not installed (pip install -e '.[test]')")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "oidc-provider.log"
    args = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    for user in USERS:
        args += ["--user-claims", json.dumps(user)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    provider = OidcProvider(process, port, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OIDC provider exited:\n{log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            url = f"{provider.issuer}/.well-known/openid-configuration"
            if httpx.get(url, timeout=1.0).status_code == 200:
                return provider
        time.sleep(0.1)
    provider.stop()
    raise RuntimeError("the OIDC provider did not start")


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    provider = start_provider(tmp_path_factory.mktemp("oidc"))
    yield provider
    provider.stop()
