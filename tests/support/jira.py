"""The Jira Service Management emulator as a subprocess, with its control client and fixtures.

:class:`JiraEmulator` implements :class:`tests.support.helpdesk.HelpdeskEmulator`
(its shared half is :class:`tests.support.emulation.EmulatorClient`, so the
delivery suites run against it) plus Jira's own controls: closing and deleting
requests, the per-issue write limit, the site's attachment size, listing page
size, expiring temporary attachments.
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

from gateway.settings import JiraSettings
from tests.support.emulation import EmulatorClient, spawn
from tests.support.jira_emulator import Credentials


class JiraEmulator(EmulatorClient):
    name = "jira"

    def __init__(
        self, process: subprocess.Popen[bytes], url: str, credentials: Credentials, log_path: Path
    ) -> None:
        super().__init__(process, url, log_path)
        self.credentials = credentials

    # -- for the client and the gateway under test --------------------------------------
    def settings(self, **overrides: Any) -> JiraSettings:
        c = self.credentials
        fields: dict[str, Any] = {
            "url": self.url,
            "service_desk_id": c.service_desk_id,
            "email": c.email,
            "api_token": c.api_token,
        }
        fields.update(overrides)
        return JiraSettings(**fields)

    def env(self) -> dict[str, str]:
        c = self.credentials
        return {
            "GATEWAY_TICKETS": "jira",
            "GATEWAY_JIRA_URL": self.url,
            "GATEWAY_JIRA_SERVICE_DESK_ID": c.service_desk_id,
            "GATEWAY_JIRA_EMAIL": c.email,
            "GATEWAY_JIRA_API_TOKEN": c.api_token,
        }

    # -- Jira's own controls ----------------------------------------------------------------
    def create_ticket(self, status: str = "open") -> str:
        """A new customer request; its issue key (``SUP-1``) is the ticket id in links."""
        return str(self._post("requests", {"status": status})["key"])

    def close_ticket(self, key: str) -> None:
        self._post(f"requests/{key}", {"status": "closed"})

    def delete_ticket(self, key: str) -> None:
        self._http.delete(f"/_emulator/requests/{key}").raise_for_status()

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        """Comments as ``{"body", "public", "attachments": [{"file_name", "size", "sha256"}]}``.

        The body is the text a reader sees: the wiki-markup escapes of square
        brackets are undone.
        """
        return [
            {
                "body": c["body"].replace("\\[", "[").replace("\\]", "]"),
                "public": c["public"],
                "attachments": [
                    {k: a[k] for k in ("file_name", "size", "sha256")} for a in c["attachments"]
                ],
            }
            for c in self.raw_comments(ticket)
        ]

    def raw_comments(self, ticket: str) -> list[dict[str, Any]]:
        return list(self._get(f"requests/{ticket}/comments")["comments"])

    def set_faults(self, **faults: Any) -> None:
        """write_limit, write_window (per issue), attachment_limit, attachments_enabled,
        page_limit, temporary_ttl, and the shared outage and rate-limit fields."""
        self._post("faults", faults)

    def expire_temporary(self) -> int:
        return int(self._post("expire_temporary")["expired"])


def start_jira_emulator(
    credentials: Credentials | None = None, log_dir: Path | None = None, timeout: float = 20.0
) -> JiraEmulator:
    """Start the emulator on a free 127.0.0.1 port and wait until it answers."""
    credentials = credentials or Credentials.generate()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="jira-emulator-"))
    process, url, log_path = spawn(
        "tests.support.jira_emulator", "jira", log_dir,
        {"JIRA_EMULATOR_CREDENTIALS": json.dumps(asdict(credentials))}, timeout,
    )  # fmt: skip
    return JiraEmulator(process, url, credentials, log_path)


@pytest.fixture(scope="session")
def jira(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JiraEmulator]:
    emulator = start_jira_emulator(log_dir=tmp_path_factory.mktemp("jira"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def jira_api(jira: JiraEmulator) -> JiraEmulator:
    """The session's emulator, emptied of requests and faults for this test."""
    jira.reset()
    return jira
