"""One error type and the catalogue of its codes.

Every failure that reaches a client is a :class:`GatewayError` carrying one of
the codes below. The code decides the HTTP status; ``gateway.http.errors``
renders it to JSON in one place. Storage and ticket-API failures are
translated into these codes where those modules meet ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class _Spec:
    status: int
    message: str


class Code(Enum):
    """The catalogue: code name -> HTTP status and default message."""

    # Links
    LINK_INVALID = _Spec(404, "This link is not valid. Ask the support team for a new one.")
    LINK_EXPIRED = _Spec(403, "This link has expired. Ask the support team for a new one.")
    DOWNLOAD_INVALID = _Spec(403, "This download link is not valid.")
    DOWNLOAD_EXPIRED = _Spec(410, "This download link has expired.")
    UNAUTHORIZED = _Spec(401, "Authentication required.")
    FORBIDDEN = _Spec(403, "Not allowed.")
    # Requests
    BAD_REQUEST = _Spec(400, "The request is malformed.")
    BAD_FILENAME = _Spec(400, "The file name is not acceptable.")
    BAD_RANGE = _Spec(400, "The Content-Range header is malformed.")
    LENGTH_REQUIRED = _Spec(411, "A length is required.")
    INCOMPLETE_BODY = _Spec(400, "The request body ended before the declared length.")
    BODY_TOO_LONG = _Spec(400, "The request body is longer than declared.")
    TOO_LARGE = _Spec(413, "The file is larger than this link allows.")
    UNSUPPORTED_MEDIA = _Spec(415, "Unsupported content type.")
    OFFSET_MISMATCH = _Spec(409, "The upload offset does not match what is stored.")
    CONFLICT = _Spec(409, "Another request is writing this upload; retry shortly.")
    NOT_FOUND = _Spec(404, "Not found.")
    GONE = _Spec(410, "This upload has expired or was removed.")
    RANGE_NOT_SATISFIABLE = _Spec(416, "The requested range is not satisfiable.")
    TOO_MANY_REQUESTS = _Spec(429, "Too many requests; retry later.")
    TIMEOUT = _Spec(408, "The client sent nothing for too long.")
    # tus
    TUS_VERSION = _Spec(412, "Unsupported tus version.")
    CHECKSUM_MISMATCH = _Spec(460, "The checksum of the received bytes does not match.")
    CHECKSUM_ALGORITHM = _Spec(400, "Unsupported checksum algorithm.")
    # Backends
    STORAGE_UNAVAILABLE = _Spec(503, "Storage is unavailable; retry later.")
    TICKETS_UNAVAILABLE = _Spec(503, "The ticket system is unavailable.")
    TICKETS_REFUSED = _Spec(502, "The ticket system refused the request.")
    SIGNIN_UNAVAILABLE = _Spec(503, "Sign-in is unavailable; retry later.")
    INTERNAL = _Spec(500, "Internal error.")

    @property
    def status(self) -> int:
        return self.value.status

    @property
    def slug(self) -> str:
        return self.name.lower()


class GatewayError(Exception):
    """The one error type. ``code`` picks the status; ``message`` is safe to show."""

    def __init__(
        self,
        code: Code,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.value.message
        self.headers = dict(headers or {})
        self.status = status or code.status
        super().__init__(f"{code.slug}: {self.message}")


class ConfigError(Exception):
    """Bad configuration: the message is one line naming the variable."""
