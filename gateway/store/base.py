"""The storage seam: an S3-shaped object store.

Intake, resumable uploads, the delivery outbox and downloads are written once
against this Protocol. ``file`` (a directory) and ``s3`` (boto3) implement it.
All keys are relative, ``/``-separated, made by the gateway (never by a
client), and the implementation adds its own root or prefix.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float  # unix seconds


@dataclass(frozen=True)
class Part:
    number: int  # 1-based, as S3
    size: int
    etag: str


@dataclass(frozen=True)
class MultipartInfo:
    key: str
    upload_id: str
    initiated: float  # unix seconds


class PreconditionFailed(Exception):
    """A conditional write found the key already present (put with if_absent)."""


class StorageError(Exception):
    """The store failed after its retries; the message is safe to log."""


@runtime_checkable
class ObjectStore(Protocol):
    """What the gateway needs from object storage."""

    name: str

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        """Store a small object whole; return its ETag.

        With ``if_absent`` the write succeeds only if the key does not exist
        yet, else :class:`PreconditionFailed` (used for locks and markers).
        """
        ...

    async def get(self, key: str) -> bytes | None:
        """A small object's bytes, or None if absent."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None:
        """Delete; absent keys are not an error."""
        ...

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        """All objects under ``prefix`` (no delimiter), in key order."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive; None = to the end)."""
        ...

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        """Start a multipart upload; return its upload id."""
        ...

    async def upload_part(
        self, key: str, upload_id: str, number: int, data: memoryview
    ) -> Part: ...

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        """Parts stored so far, by number. Raises KeyError if the upload is gone."""
        ...

    async def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[Part]) -> str:
        """Assemble the parts; return the object's ETag (as HEAD reports it)."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort; an upload that is already gone is not an error."""
        ...

    async def list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]: ...

    async def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> Part:
        """Make part ``number`` of the upload a copy of the object ``source_key``, inside
        the store (S3 UploadPartCopy; the file store links or copies in the kernel).

        The source stays as it is. KeyError names a missing source; a store that
        cannot copy parts raises NotImplementedError.
        """
        ...

    async def compose(
        self, key: str, sources: builtins.list[str], content_type: str | None = None
    ) -> str:
        """Make ``key`` the concatenation of the objects ``sources``, in order; return its
        ETag (as HEAD reports it).

        Done inside the store as far as it can be, so the bytes do not pass
        through the gateway a second time: the file store links the sources'
        files, S3 copies parts server-side (UploadPartCopy) and sends only
        the pieces too small to be parts of their own. The sources stay as
        they are. A missing source raises KeyError naming it; ``key`` is
        written only once every source was found whole.
        """
        ...

    async def housekeep(self) -> int:
        """Remove the store's own leftovers (not objects); return how many went.

        For the file store: parts dirs that a crash between the steps of a
        completion left behind. S3 servers keep their own house (the
        lifecycle rule in docs/operations.md aborts stale multipart uploads).
        """
        ...

    async def presign_get(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        """A URL that lets anyone GET ``key`` for ``expires_in`` seconds, answering with
        that ``Content-Disposition`` and ``Content-Type``; None if the store cannot.

        Only S3 can: downloads then go from storage to the engineer directly.
        """
        ...

    async def ping(self) -> None:
        """Raise StorageError if the store is unreachable."""
        ...

    async def close(self) -> None: ...
