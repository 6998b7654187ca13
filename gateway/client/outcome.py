"""What became of one file: the line ``gateway upload`` prints for it, or why it failed."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


class Failed(Exception):
    """One file's upload or download failed for good; ``reason`` is one word for its line."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    sha256: str = ""
    size: int = 0
    reason: str = ""

    def line(self) -> str:
        """``OK <sha256> <size> <name>`` or ``FAILED <reason> <name>``: the stdout protocol."""
        if self.ok:
            return f"OK {self.sha256} {self.size} {self.name}"
        return f"FAILED {self.reason} {self.name}"


def reason(response: httpx.Response) -> str:
    """The one word a refusal puts on the ``FAILED`` line."""
    return f"http-{response.status_code}"


def message(response: httpx.Response) -> str:
    """The server's error message, else the status's reason phrase."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase
