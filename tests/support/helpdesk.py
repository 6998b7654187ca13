"""One test-side seam over the ticket-system emulators, so delivery suites run for each.

A suite that is about delivery (exactly once, outages, coalescing, names,
sizes) takes the ``helpdesk`` fixture and runs once per registered system.
Each emulator runs once per test session (its own start function, shared
with that system's own tests) and is reset before every test.

To add a system: write its emulator to :class:`HelpdeskEmulator` and add one
entry to :data:`HELPDESKS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pytest

from tests.support.zendesk import ZendeskEmulator


@runtime_checkable
class HelpdeskEmulator(Protocol):
    name: str
    url: str

    def env(self) -> dict[str, str]:
        """GATEWAY_TICKETS and the credentials for a gateway process using this emulator."""
        ...

    def reset(self) -> None: ...

    def create_ticket(self) -> str:
        """Create a ticket; returns its id as used in upload links."""
        ...

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        """``[{"body": str, "public": bool, "attachments": [{"file_name", "size", "sha256"}]}]``."""
        ...

    def outage(self, mode: str | None, retry_after: int = 1) -> None:
        """``"503"`` (with Retry-After), ``"drop"`` (connections cut) or None (over)."""
        ...

    def fail_next(self, status: int, count: int = 1, path: str = "", method: str = "") -> None:
        """Answer the next ``count`` API requests matching ``path``/``method`` with ``status``."""
        ...

    def stop(self) -> None: ...


class ZendeskHelpdesk:
    """The Zendesk emulator seen through :class:`HelpdeskEmulator` (its own methods unchanged)."""

    name = "zendesk"
    _ids = itertools.count(90_001)

    def __init__(self, emulator: ZendeskEmulator) -> None:
        self.emulator = emulator
        self.url = emulator.url

    def env(self) -> dict[str, str]:
        return self.emulator.env("oauth")

    def reset(self) -> None:
        self.emulator.reset()

    def create_ticket(self) -> str:
        ticket = next(self._ids)
        self.emulator.create_ticket(ticket)
        return str(ticket)

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        return [
            {
                "body": c["body"],
                "public": c["public"],
                "attachments": [
                    {k: a[k] for k in ("file_name", "size", "sha256")} for a in c["attachments"]
                ],
            }
            for c in self.emulator.comments(ticket)
        ]

    def outage(self, mode: str | None, retry_after: int = 1) -> None:
        self.emulator.outage(mode, retry_after)

    def fail_next(self, status: int, count: int = 1, path: str = "", method: str = "") -> None:
        self.emulator.fail_next(status, count, path, method)

    def stop(self) -> None:
        self.emulator.stop()


# name -> how a test gets that system's session-wide emulator.
HELPDESKS: dict[str, Callable[[pytest.FixtureRequest], HelpdeskEmulator]] = {
    "zendesk": lambda request: ZendeskHelpdesk(request.getfixturevalue("zendesk")),
    "jira": lambda request: request.getfixturevalue("jira"),
    "freshdesk": lambda request: request.getfixturevalue("freshdesk"),
    "servicenow": lambda request: request.getfixturevalue("servicenow"),
}


def each_helpdesk_with(*values: str) -> list[Any]:
    """``(helpdesk, value)`` parameters: every system once, taking ``values`` in turn.

    For an axis that is independent of the ticket system (the store, say):
    each value is still exercised, without multiplying the suite's time by it.
    Use with ``indirect=["helpdesk"]``.
    """
    return [
        pytest.param(name, values[i % len(values)], id=f"{name}-{values[i % len(values)]}")
        for i, name in enumerate(HELPDESKS)
    ]


@pytest.fixture(params=list(HELPDESKS))
def helpdesk(request: pytest.FixtureRequest) -> HelpdeskEmulator:
    """Each registered ticket-system emulator in turn, emptied for this test."""
    emulator = HELPDESKS[request.param](request)
    assert isinstance(emulator, HelpdeskEmulator), f"{request.param} misses part of the Protocol"
    assert emulator.name == request.param
    emulator.reset()
    return emulator
