"""Metrics around the seams: the store and the ticket system, timed and counted.

Thin wrappers that implement the same Protocols, so nothing else needs to
know that calls are measured.
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Sequence

from gateway.metrics import Metrics
from gateway.store.base import MultipartInfo, ObjectInfo, ObjectStore, Part, PreconditionFailed
from gateway.tickets.base import NewComment, TicketError, TicketSystem

# Outcomes that are answers, not failures of the store.
_NOT_ERRORS = (KeyError, PreconditionFailed)


class InstrumentedStore:
    def __init__(self, inner: ObjectStore, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._seconds = metrics.storage_request_seconds
        self._errors = metrics.storage_errors

    @contextlib.contextmanager
    def _measure(self, op: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except _NOT_ERRORS:
            raise
        except Exception:
            # Only failures: a cancelled request or a download closed early (GeneratorExit)
            # is the client going away, not the store failing.
            self._errors.labels(op).inc()
            raise
        finally:
            self._seconds.labels(op).observe(time.perf_counter() - started)

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        with self._measure("put"):
            return await self.inner.put(key, data, if_absent=if_absent, content_type=content_type)

    async def get(self, key: str) -> bytes | None:
        with self._measure("get"):
            return await self.inner.get(key)

    async def head(self, key: str) -> ObjectInfo | None:
        with self._measure("head"):
            return await self.inner.head(key)

    async def delete(self, key: str) -> None:
        with self._measure("delete"):
            await self.inner.delete(key)

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        with self._measure("list"):
            return await self.inner.list(prefix)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        with self._measure("read"):
            async for chunk in self.inner.read(key, start, end):
                yield chunk

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        with self._measure("create_multipart"):
            return await self.inner.create_multipart(key, content_type)

    async def upload_part(self, key: str, upload_id: str, number: int, data: memoryview) -> Part:
        with self._measure("upload_part"):
            return await self.inner.upload_part(key, upload_id, number, data)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        with self._measure("list_parts"):
            return await self.inner.list_parts(key, upload_id)

    async def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[Part]) -> str:
        with self._measure("complete_multipart"):
            return await self.inner.complete_multipart(key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with self._measure("abort_multipart"):
            await self.inner.abort_multipart(key, upload_id)

    async def list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]:
        with self._measure("list_multipart"):
            return await self.inner.list_multipart(prefix)

    async def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> Part:
        with self._measure("copy_part"):
            return await self.inner.copy_part(key, upload_id, number, source_key)

    async def compose(
        self, key: str, sources: builtins.list[str], content_type: str | None = None
    ) -> str:
        with self._measure("compose"):
            return await self.inner.compose(key, sources, content_type)

    async def housekeep(self) -> int:
        with self._measure("housekeep"):
            return await self.inner.housekeep()

    async def presign_get(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        with self._measure("presign"):
            return await self.inner.presign_get(
                key, expires_in=expires_in, disposition=disposition, content_type=content_type
            )

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class InstrumentedTickets:
    def __init__(self, inner: TicketSystem, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_comment_attachments = inner.max_comment_attachments
        self.max_comment_files: int | None = getattr(inner, "max_comment_files", None)
        self._seconds = metrics.ticket_request_seconds
        self._errors = metrics.ticket_errors

    @contextlib.contextmanager
    def _measure(self, op: str) -> Iterator[None]:
        with self._seconds.labels(op).time():
            try:
                yield
            except TicketError as exc:
                self._errors.labels(op, str(exc.status) if exc.status else "error").inc()
                raise

    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        with self._measure("post_comment"):
            await self.inner.post_comment(ticket, comment)

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        with self._measure("find_markers"):
            return await self.inner.find_markers(ticket, markers)

    async def ping(self) -> None:
        with self._measure("ping"):
            await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()
