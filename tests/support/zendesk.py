"""The Zendesk emulator as a subprocess, with a small control client and fixtures.

The emulator runs in its own process so a test may SIGKILL the gateway without
touching it, and so its event loop never competes with the test's. Bench
scripts use :func:`start_zendesk_emulator` directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import ZendeskSettings
from tests.support.zendesk_emulator import Credentials

REPO = Path(__file__).resolve().parents[2]


class ZendeskEmulator:
    """A running emulator: ``url``, ``credentials`` and the control API."""

    def __init__(
        self, process: subprocess.Popen[bytes], url: str, credentials: Credentials, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.credentials = credentials
        self.log_path = log_path
        self._http = httpx.Client(base_url=url, timeout=10.0)

    # -- settings for the client under test -----------------------------------
    def settings(self, auth: str = "oauth", **overrides: Any) -> ZendeskSettings:
        """ZendeskSettings for ``auth`` in oauth, client_credentials, api_token."""
        c = self.credentials
        fields: dict[str, Any] = {"url": self.url}
        if auth == "oauth":
            fields["oauth_token"] = c.oauth_token
        elif auth == "client_credentials":
            fields.update(client_id=c.client_id, client_secret=c.client_secret)
        elif auth == "api_token":
            fields.update(email=c.email, api_token=c.api_token)
        else:
            raise ValueError(f"unknown auth kind {auth!r}")
        fields.update(overrides)
        return ZendeskSettings(**fields)

    def env(self, auth: str = "oauth") -> dict[str, str]:
        """The GATEWAY_ZENDESK_* environment for a gateway process using this emulator."""
        c = self.credentials
        env = {"GATEWAY_TICKETS": "zendesk", "GATEWAY_ZENDESK_URL": self.url}
        if auth == "oauth":
            env["GATEWAY_ZENDESK_OAUTH_TOKEN"] = c.oauth_token
        elif auth == "client_credentials":
            env["GATEWAY_ZENDESK_CLIENT_ID"] = c.client_id
            env["GATEWAY_ZENDESK_CLIENT_SECRET"] = c.client_secret
        elif auth == "api_token":
            env["GATEWAY_ZENDESK_EMAIL"] = c.email
            env["GATEWAY_ZENDESK_TOKEN"] = c.api_token
        else:
            raise ValueError(f"unknown auth kind {auth!r}")
        return env

    # -- control API ----------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._http.post(f"/_emulator/{path}", json=payload or {})
        response.raise_for_status()
        return response.json()

    def _get(self, path: str) -> Any:
        response = self._http.get(f"/_emulator/{path}")
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("reset")

    def create_ticket(
        self,
        ticket_id: int | str,
        requester_email: str = "customer@example.test",
        *,
        subject: str | None = None,
        status: str = "open",
        description: str | None = "I need help with a large file.",
    ) -> dict[str, Any]:
        payload = {
            "id": int(ticket_id),
            "requester_email": requester_email,
            "subject": subject,
            "status": status,
            "description": description,
        }
        return dict(self._post("tickets", payload)["ticket"])

    def comments(self, ticket_id: int | str) -> list[dict[str, Any]]:
        """Comments as recorded: body, public, author_id, attachments with size and sha256."""
        return list(self._get(f"tickets/{int(ticket_id)}/comments")["comments"])

    def outage(self, mode: str | None, retry_after: int = 1) -> None:
        """``"503"`` (Retry-After), ``"drop"`` (close the socket, no response) or None."""
        self._post("faults", {"outage": mode, "outage_retry_after": retry_after})

    def set_rate_limit(self, limit: int, window: float = 600.0) -> None:
        self._post("faults", {"rate_limit": limit, "rate_window": window})

    def set_token_ttl(self, seconds: float) -> None:
        """Lifetime of upload tokens handed out from now on."""
        self._post("faults", {"upload_ttl": seconds})

    def set_oauth_ttl(self, seconds: int | None) -> None:
        """``expires_in`` of client-credentials tokens (None: they never expire)."""
        self._post("faults", {"oauth_ttl": seconds})

    def expire_tokens(self) -> int:
        """Expire every upload token now; returns how many there were."""
        return int(self._post("expire_uploads")["expired"])

    def revoke_oauth(self) -> int:
        """Invalidate tokens issued by /oauth/tokens (the static OAuth token stays valid)."""
        return int(self._post("revoke_oauth")["revoked"])

    def fail_next(self, status: int, count: int = 1, path: str = "", method: str = "") -> None:
        """Answer the next ``count`` API requests matching ``path``/``method`` with ``status``."""
        self._post("fail_next", {"status": status, "count": count, "path": path, "method": method})

    def state(self) -> dict[str, Any]:
        """Everything recorded: tickets with comments, requests (with auth kind), counts."""
        return dict(self._get("state"))

    def download(self, content_url: str) -> bytes:
        return self._http.get(content_url).content

    # -- lifecycle --------------------------------------------------------------
    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_zendesk_emulator(
    credentials: Credentials | None = None, log_dir: Path | None = None, timeout: float = 20.0
) -> ZendeskEmulator:
    """Start the emulator on a free 127.0.0.1 port and wait until it answers."""
    credentials = credentials or Credentials.generate()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="zendesk-emulator-"))
    log_path = log_dir / "zendesk-emulator.log"
    env = {**os.environ, "ZENDESK_EMULATOR_CREDENTIALS": json.dumps(asdict(credentials))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zendesk_emulator"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    process.stdout.close()
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError(
            f"zendesk emulator did not start; see {log_path}:\n" + log_path.read_text()[-2000:]
        )
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    emulator = ZendeskEmulator(process, url, credentials, log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1.0).status_code == 200:
                return emulator
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise RuntimeError(f"zendesk emulator did not answer; see {log_path}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def zendesk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZendeskEmulator]:
    emulator = start_zendesk_emulator(log_dir=tmp_path_factory.mktemp("zendesk"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def zendesk_api(zendesk: ZendeskEmulator) -> ZendeskEmulator:
    """The session's emulator, emptied of tickets and faults for this test."""
    zendesk.reset()
    return zendesk
