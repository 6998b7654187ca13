"""Metrics around the seams: the store and the ticket system, timed and counted.

Thin wrappers that implement the same Protocols, so nothing else needs to
know that calls are measured.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Sequence

from gateway.metrics import Metrics
from gateway.store.base import MultipartInfo, ObjectInfo, ObjectStore, Part
from gateway.tickets.base import NewComment, TicketError, TicketSystem


class InstrumentedStore:
    def __init__(self, inner: ObjectStore, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._seconds = metrics.storage_request_seconds
        self._errors = metrics.storage_errors

    def _done(self, op: str, started: float, failed: bool) -> None:
        self._seconds.labels(op).observe(time.perf_counter() - started)
        if failed:
            self._errors.labels(op).inc()

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        started, failed = time.perf_counter(), True
        try:
            etag = await self.inner.put(key, data, if_absent=if_absent, content_type=content_type)
            failed = False
            return etag
        finally:
            self._done("put", started, failed)

    async def get(self, key: str) -> bytes | None:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.get(key)
            failed = False
            return value
        finally:
            self._done("get", started, failed)

    async def head(self, key: str) -> ObjectInfo | None:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.head(key)
            failed = False
            return value
        finally:
            self._done("head", started, failed)

    async def delete(self, key: str) -> None:
        started, failed = time.perf_counter(), True
        try:
            await self.inner.delete(key)
            failed = False
        finally:
            self._done("delete", started, failed)

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.list(prefix)
            failed = False
            return value
        finally:
            self._done("list", started, failed)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        started, failed = time.perf_counter(), True
        try:
            async for chunk in self.inner.read(key, start, end):
                yield chunk
            failed = False
        finally:
            self._done("read", started, failed)

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.create_multipart(key, content_type)
            failed = False
            return value
        finally:
            self._done("create_multipart", started, failed)

    async def upload_part(self, key: str, upload_id: str, number: int, data: memoryview) -> Part:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.upload_part(key, upload_id, number, data)
            failed = False
            return value
        finally:
            self._done("upload_part", started, failed)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.list_parts(key, upload_id)
            failed = False
            return value
        except KeyError:
            failed = False
            raise
        finally:
            self._done("list_parts", started, failed)

    async def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[Part]) -> str:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.complete_multipart(key, upload_id, parts)
            failed = False
            return value
        finally:
            self._done("complete_multipart", started, failed)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        started, failed = time.perf_counter(), True
        try:
            await self.inner.abort_multipart(key, upload_id)
            failed = False
        finally:
            self._done("abort_multipart", started, failed)

    async def list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]:
        started, failed = time.perf_counter(), True
        try:
            value = await self.inner.list_multipart(prefix)
            failed = False
            return value
        finally:
            self._done("list_multipart", started, failed)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class InstrumentedTickets:
    def __init__(self, inner: TicketSystem, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_comment_attachments = inner.max_comment_attachments
        self._seconds = metrics.ticket_request_seconds
        self._errors = metrics.ticket_errors

    def _failed(self, op: str, exc: TicketError) -> None:
        self._errors.labels(op, str(exc.status) if exc.status else "error").inc()

    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        with self._seconds.labels("post_comment").time():
            try:
                await self.inner.post_comment(ticket, comment)
            except TicketError as exc:
                self._failed("post_comment", exc)
                raise

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        with self._seconds.labels("find_markers").time():
            try:
                return await self.inner.find_markers(ticket, markers)
            except TicketError as exc:
                self._failed("find_markers", exc)
                raise

    async def ping(self) -> None:
        with self._seconds.labels("ping").time():
            try:
                await self.inner.ping()
            except TicketError as exc:
                self._failed("ping", exc)
                raise

    async def close(self) -> None:
        await self.inner.close()
