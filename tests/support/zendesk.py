"""The Zendesk emulator as a subprocess, with a small control client and fixtures.

The emulator runs in its own process so a test may SIGKILL the gateway without
touching it, and so its event loop never competes with the test's. Bench
scripts use :func:`start_zendesk_emulator` directly.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ZendeskSettings
from tests.support.emulation import EmulatorClient, spawn
from tests.support.zendesk_emulator import Credentials


class ZendeskEmulator(EmulatorClient):
    """A running emulator: ``url``, ``credentials`` and the control API.

    Reset, outages, injected failures, the recorded state and stopping are the
    shared control client's (:class:`tests.support.emulation.EmulatorClient`).
    """

    name = "zendesk"

    def __init__(
        self, process: subprocess.Popen[bytes], url: str, credentials: Credentials, log_path: Path
    ) -> None:
        super().__init__(process, url, log_path)
        self.credentials = credentials

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

    def set_update_limit(self, limit: int, window: float = 600.0) -> None:
        """Zendesk's per-ticket update limit: ``limit`` updates in ``window`` seconds."""
        self._post("faults", {"update_limit": limit, "update_window": window})

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

    def download(self, content_url: str) -> bytes:
        return self._http.get(content_url).content


def start_zendesk_emulator(
    credentials: Credentials | None = None, log_dir: Path | None = None, timeout: float = 20.0
) -> ZendeskEmulator:
    """Start the emulator on a free 127.0.0.1 port and wait until it answers."""
    credentials = credentials or Credentials.generate()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="zendesk-emulator-"))
    process, url, log_path = spawn(
        "tests.support.zendesk_emulator", "zendesk", log_dir,
        {"ZENDESK_EMULATOR_CREDENTIALS": json.dumps(asdict(credentials))}, timeout,
    )  # fmt: skip
    return ZendeskEmulator(process, url, credentials, log_path)


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
