"""The ticket-system seam.

Delivery (``gateway.delivery``) posts one comment per batch of finished files;
it never knows whether the tickets live in the data dir or in Zendesk.
Exactly-once after a crash rests on :meth:`TicketSystem.find_markers`: every
comment the gateway posts carries a marker per file, and before posting again
the outbox asks which markers are already on the ticket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class AttachmentSource:
    """A file to attach, streamed from the store when the ticket system asks."""

    filename: str
    size: int
    content_type: str
    open: Callable[[], AsyncIterator[bytes]]
    # Hex SHA-256 of the bytes, when known: lets a client recognise a copy it
    # already uploaded before a crash (ServiceNow attaches files to the record
    # before the note that names them).
    sha256: str = ""


@dataclass(frozen=True)
class NewComment:
    body: str  # plain text; already contains the markers
    public: bool
    attachments: Sequence[AttachmentSource] = ()


class TicketError(Exception):
    """A ticket-system failure, translated where the client meets our code.

    ``retryable`` says whether trying again later can help (429, 5xx, network);
    ``retry_after`` is the server's hint in seconds. Messages never carry
    credentials.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class TicketSystem(Protocol):
    name: str
    # Largest total of attachment bytes one comment may carry.
    max_comment_attachments: int

    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        """Add the comment (with its attachments) to the ticket. Raises TicketError."""
        ...

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        """Which of ``markers`` already appear in the ticket's comments."""
        ...

    async def ping(self) -> None:
        """Raise TicketError if the system is unreachable or refuses our credentials."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AttachmentLimited(Protocol):
    """A ticket system whose largest attachment is a setting that can be read."""

    async def attachment_limit(self) -> int:
        """The most bytes one attachment may have now (0: attachments are off). TicketError."""
        ...
