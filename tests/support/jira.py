"""The Jira Service Management emulator as a subprocess, with its control client and fixtures.

:class:`JiraEmulator` implements :class:`tests.support.helpdesk.HelpdeskEmulator`
(so the delivery suites run against it) plus Jira's own controls: closing and
deleting requests, the site's attachment size, listing page size, expiring
temporary attachments.
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

from gateway.settings import JiraSettings
from tests.support.jira_emulator import Credentials

REPO = Path(__file__).resolve().parents[2]


class JiraEmulator:
    name = "jira"

    def __init__(
        self, process: subprocess.Popen[bytes], url: str, credentials: Credentials, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.credentials = credentials
        self.log_path = log_path
        self._http = httpx.Client(base_url=url, timeout=10.0)

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

    # -- control API ----------------------------------------------------------------------
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
        raw = self._get(f"requests/{ticket}/comments")["comments"]
        return [
            {
                "body": c["body"].replace("\\[", "[").replace("\\]", "]"),
                "public": c["public"],
                "attachments": [
                    {k: a[k] for k in ("file_name", "size", "sha256")} for a in c["attachments"]
                ],
            }
            for c in raw
        ]

    def raw_comments(self, ticket: str) -> list[dict[str, Any]]:
        return list(self._get(f"requests/{ticket}/comments")["comments"])

    def outage(self, mode: str | None, retry_after: int = 1) -> None:
        self._post("faults", {"outage": mode, "outage_retry_after": retry_after})

    def fail_next(self, status: int, count: int = 1, path: str = "", method: str = "") -> None:
        self._post("fail_next", {"status": status, "count": count, "path": path, "method": method})

    def set_faults(self, **faults: Any) -> None:
        """rate_limit, rate_window, attachment_limit, attachments_enabled, page_limit,
        temporary_ttl."""
        self._post("faults", faults)

    def expire_temporary(self) -> int:
        return int(self._post("expire_temporary")["expired"])

    def state(self) -> dict[str, Any]:
        return dict(self._get("state"))

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_jira_emulator(
    credentials: Credentials | None = None, log_dir: Path | None = None, timeout: float = 20.0
) -> JiraEmulator:
    """Start the emulator on a free 127.0.0.1 port and wait until it answers."""
    credentials = credentials or Credentials.generate()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="jira-emulator-"))
    log_path = log_dir / "jira-emulator.log"
    env = {**os.environ, "JIRA_EMULATOR_CREDENTIALS": json.dumps(asdict(credentials))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.jira_emulator"],
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
        raise RuntimeError(f"jira emulator did not start:\n{log_path.read_text()[-2000:]}")
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    emulator = JiraEmulator(process, url, credentials, log_path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/_emulator/health", timeout=1.0).status_code == 200:
                return emulator
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise RuntimeError(f"jira emulator did not answer; see {log_path}")
        time.sleep(0.05)


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
