"""What the store holds about uploads and files, and where (the key layout).

Everything lives in the store so that any replica can serve any request and
a restart loses nothing:

    uploads/{id}/info.json     an unfinished upload's record
    uploads/{id}/tail.{n}      bytes received after the last full part; they
                               will open part n (stale once part n exists)
    uploads/{id}/seg.{n}       part n when it is larger than a buffer: a multipart
                               upload of its own (a segment), in sub-parts; once
                               whole it is copied into part n and deleted
    uploads/{id}/tail.{n}.{m}  bytes received after segment n's last full
                               sub-part; they will open its sub-part m
    uploads/{id}/lock          a short lease held by the request writing it
    uploads/{id}/final         a partial upload's claim: its final upload's id
                               (a finished partial upload keeps its info.json
                               and files/{id}/data until a final upload uses it)
    names/{link}/{hash}        the unfinished raw PUT for a (link, filename)
    files/{id}/data            a finished file's bytes (the multipart key)
    files/{id}/meta.json       its record: the receipt plus delivery state
    links/{link}/{id}          index of the files uploaded through a link
    by-ticket/{ticket}/{id}    index of the files of a ticket (purge)
    outbox/{id}.json           a finished file still to be delivered
    outbox-lease/{ticket}      the lease of the replica delivering to a ticket
    joined/{id}                a partial upload that a final one used: which
                               file it became (a repeated final POST finds it)
    assembling/{id}            a final upload whose assembly has not finished
    webhook-replay/{hash}      a webhook signature already used (replay guard)

Outside the upload engine, these records are read and written through
:class:`gateway.uploads.repository.Records`, by meaning rather than by key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.scan import NOT_SCANNED_TOO_LARGE, describe
from gateway.uploads.partsize import PartPlan


def new_id() -> str:
    """An unguessable id (128 bits), safe in URLs and keys."""
    return secrets.token_urlsafe(16).replace("-", "x").replace("_", "y")


def is_id(text: str) -> bool:
    return 16 <= len(text) <= 32 and text.isascii() and text.isalnum()


UPLOADS_PREFIX = "uploads/"
FILES_PREFIX = "files/"
NAMES_PREFIX = "names/"
OUTBOX_PREFIX = "outbox/"
JOINED_PREFIX = "joined/"
REPLAY_PREFIX = "webhook-replay/"


def upload_prefix(upload_id: str) -> str:
    """Where an unfinished upload keeps its working objects (record, tail, lease, claim)."""
    return f"{UPLOADS_PREFIX}{upload_id}/"


def info_key(upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/info.json"


def tail_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/tail."


def tail_key(upload_id: str, part: int) -> str:
    return f"{tail_prefix(upload_id)}{part}"


def segment_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/seg."


def segment_key(upload_id: str, part: int) -> str:
    """Part ``part`` written as a multipart upload of its own (it is larger than a buffer)."""
    return f"{segment_prefix(upload_id)}{part}"


def sub_tail_key(upload_id: str, part: int, sub: int) -> str:
    """The bytes after segment ``part``'s last full sub-part; they open sub-part ``sub``."""
    return f"{tail_prefix(upload_id)}{part}.{sub}"


def lock_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/lock"


def final_key(upload_id: str) -> str:
    """A partial upload's claim: the id of the final upload it is part of."""
    return f"uploads/{upload_id}/final"


def name_key(link_id: str, filename: str) -> str:
    digest = hashlib.sha256(filename.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{NAMES_PREFIX}{link_id}/{digest}"


def data_key(file_id: str) -> str:
    return f"{FILES_PREFIX}{file_id}/data"


def meta_key(file_id: str) -> str:
    return f"{FILES_PREFIX}{file_id}/meta.json"


def link_index_prefix(link_id: str) -> str:
    return f"links/{link_id}/"


def link_index_key(link_id: str, file_id: str) -> str:
    return f"{link_index_prefix(link_id)}{file_id}"


def ticket_index_prefix(ticket: str) -> str:
    return f"by-ticket/{ticket}/"


def ticket_index_key(ticket: str, file_id: str) -> str:
    return f"{ticket_index_prefix(ticket)}{file_id}"


def outbox_key(file_id: str) -> str:
    return f"{OUTBOX_PREFIX}{file_id}.json"


def outbox_lease_key(ticket: str) -> str:
    return f"outbox-lease/{ticket}"


def replay_marker_key(name: str) -> str:
    """A used webhook signature, by its short fixed-length name."""
    return f"{REPLAY_PREFIX}{name}"


PARTIAL = "partial"
FINAL = "final"
MAX_PARTIALS = 100  # partial uploads one final upload may name


def joined_key(upload_id: str) -> str:
    return f"{JOINED_PREFIX}{upload_id}"


ASSEMBLING_PREFIX = "assembling/"


def assembling_key(upload_id: str) -> str:
    """A final upload whose assembly has not finished: what every replica looks for."""
    return f"{ASSEMBLING_PREFIX}{upload_id}"


def dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class UploadRecord:
    """An unfinished upload. The offset is not here: it is derived from the store."""

    id: str
    ticket: str
    link_id: str
    filename: str
    length: int | None  # None until known (chunked PUT, tus Upload-Defer-Length)
    max_size: int
    plan: PartPlan
    created_at: float
    expires_at: float
    protocol: str  # put, form, tus
    content_type: str = "application/octet-stream"
    multipart_id: str | None = None
    committed: int = 0  # how many full parts count; written parts past it are ignored
    # The open segment (part ``committed + 1`` when it is larger than a buffer): its
    # multipart upload id and how many of its sub-parts count.
    segment_id: str | None = None
    segment_committed: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    # tus concatenation: "partial" (a piece of a file, never delivered on its own) or
    # "final" (assembled from the partial uploads named in ``sources``, in order).
    concat: str | None = None
    sources: list[str] = field(default_factory=list)
    # Taken in by a process that scans: only a process that scans may deliver it.
    scan_required: bool = False

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data["plan"] = self.plan.to_json()
        return dumps(data)

    @classmethod
    def from_bytes(cls, raw: bytes) -> UploadRecord:
        data = json.loads(raw)
        data["plan"] = PartPlan.from_json(data["plan"])
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class FileRecord:
    """A finished file: what the receipt shows plus its delivery state."""

    file_id: str
    ticket: str
    link_id: str
    filename: str
    size: int
    sha256: str
    route: str  # attachment | storage
    content_type: str
    protocol: str
    created_at: float
    etag: str = ""
    status: str = "pending"  # pending | delivered | failed | quarantined | scanning
    status_detail: str = ""
    delivered_at: float | None = None
    scan: str | None = None  # None (not scanned), clean, infected:SIGNATURE, not_scanned:too_large
    scan_limit: int | None = None  # the scanner's limit in bytes, when the file went past it
    # Must be scanned before delivery: recorded at intake, so a replica without a
    # scanner leaves the file to one that has it.
    scan_required: bool = False
    retain_until: float | None = None

    def to_bytes(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> FileRecord:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def receipt(self) -> dict[str, Any]:
        """The public receipt: never the staff download link."""
        receipt: dict[str, Any] = {
            "file_id": self.file_id,
            "filename": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "route": self.route,
            "ticket": self.ticket,
            "status": self.status,
            "created_at": self.created_at,
        }
        if self.status_detail:
            receipt["status_detail"] = self.status_detail
        if self.scan is not None:
            receipt["scan"] = self.scan
            if self.scan == NOT_SCANNED_TOO_LARGE:
                receipt["scan_detail"] = describe(self.scan, self.scan_limit)
        return receipt


@dataclass
class OutboxEntry:
    """A finished file still to be delivered, with its delivery attempts so far."""

    file_id: str
    ticket: str
    enqueued_at: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    refused: bool = False  # the last failure was a refusal (parked as failed)
    # Taken in by a process that scans: a process without a scanner leaves it alone.
    scan_required: bool = False

    def to_bytes(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> OutboxEntry:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
