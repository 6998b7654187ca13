"""Whole objects on S3: put (conditional too), get, head, delete, list, ranged reads."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread

from gateway.store.base import ObjectInfo, PreconditionFailed
from gateway.store.keys import check_prefix
from gateway.store.s3.client import _NOT_FOUND, S3Base, S3Error, _unquote, log

READ_CHUNK = 1024 * 1024
READ_BATCH = 2  # chunks read per worker-thread call


class S3Objects(S3Base):
    """Whole objects: small ones in one request, large ones streamed by range."""

    async def put(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None
    ) -> str:
        extra: dict[str, Any] = {**self._sse, **self._checksum}
        if content_type:
            extra["ContentType"] = content_type
        if if_absent and self._conditional_put is False:
            return await self._put_if_absent_here(key, data, extra)
        if if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            response = await self._call(
                self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **extra
            )
        except S3Error as exc:
            if if_absent and exc.status == 412:
                raise PreconditionFailed(key) from None
            if if_absent and exc.code == "NotImplemented":
                self._refuses_conditional_put(exc)
                del extra["IfNoneMatch"]
                return await self._put_if_absent_here(key, data, extra)
            raise
        if if_absent:
            self._conditional_put = True
        return _unquote(response.get("ETag", ""))

    def _refuses_conditional_put(self, exc: S3Error) -> None:
        if self._conditional_put is not False:
            log.warning(
                "the S3 server refuses conditional writes (PutObject If-None-Match: %s); "
                "create-if-absent falls back to HEAD then PUT, which is exclusive only "
                "within this process: run a single gateway replica on this storage",
                exc,
            )
        self._conditional_put = False

    async def _put_if_absent_here(self, key: str, data: bytes, extra: dict[str, Any]) -> str:
        """Create-if-absent for servers without If-None-Match (OpenStack Swift's s3api).

        HEAD then PUT under a per-key lock: exclusive among this store's callers
        (one process), but another process can slip in between the two
        requests. The warning logged when the server first refused says so.
        """
        lock = self._absent_locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                if await self.head(key) is not None:
                    raise PreconditionFailed(key)
                response = await self._call(
                    self._client.put_object,
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=data,
                    **extra,
                )
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._absent_locks.pop(key, None)
        return _unquote(response.get("ETag", ""))

    async def get(self, key: str) -> bytes | None:
        try:
            response = await self._call(
                self._client.get_object, Bucket=self.bucket, Key=self._key(key)
            )
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        body = response["Body"]
        try:
            return await self._call(body.read)
        finally:
            body.close()

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            response = await self._call(
                self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=_unquote(response.get("ETag", "")),
            last_modified=response["LastModified"].timestamp(),
        )

    async def delete(self, key: str) -> None:
        try:
            await self._call(self._client.delete_object, Bucket=self.bucket, Key=self._key(key))
        except S3Error as exc:
            if exc.code not in _NOT_FOUND:
                raise

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        full_prefix = self.prefix + check_prefix(prefix)
        found: list[ObjectInfo] = []
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"ContinuationToken": token} if token else {}
            page = await self._call(
                self._client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=full_prefix,
                MaxKeys=self.page_size,
                **extra,
            )
            for item in page.get("Contents", []):
                found.append(
                    ObjectInfo(
                        key=self._strip(item["Key"]),
                        size=item["Size"],
                        etag=_unquote(item.get("ETag", "")),
                        last_modified=item["LastModified"].timestamp(),
                    )
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        found.sort(key=lambda info: info.key)
        return found

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream a byte range; a missing key raises KeyError, a range past the end is empty."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad range start={start} end={end}")
        full_key = self._key(key)
        if end is not None and end == start:
            return
        extra: dict[str, Any] = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            extra["Range"] = f"bytes={start}-{last}"
        try:
            response = await self._call(
                self._client.get_object, Bucket=self.bucket, Key=full_key, **extra
            )
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise KeyError(key) from None
            if exc.code == "InvalidRange" or exc.status == 416:
                return
            raise
        body = response["Body"]
        # One worker-thread call reads a batch of chunks, and the next batch is read while
        # this one is sent: half the thread hops, each of which waits for a core twice when
        # the machine is busy, and the S3 read overlaps the client's. Two chunks, not more:
        # with 16 downloads at once, batches of four took the gateway's peak RSS from 140
        # to 256-297 MiB, batches of two to 173-192 MiB.
        batch: asyncio.Future[builtins.list[bytes]] = asyncio.ensure_future(
            self._call(_read_batch, body=body)
        )
        try:
            while chunks := await batch:
                full = len(chunks) == READ_BATCH
                if full:
                    batch = asyncio.ensure_future(self._call(_read_batch, body=body))
                chunks.reverse()
                while chunks:
                    yield chunks.pop()  # dropped as sent, not held to the batch's end
                if not full:
                    break
        finally:
            if not batch.done():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([batch])  # never close the body under a reading thread
            if not batch.cancelled():
                batch.exception()  # retrieved: a read abandoned with the response is no news
            body.close()


def _read_batch(body: Any) -> list[bytes]:
    """Up to :data:`READ_BATCH` chunks of the body, fewer only at its end."""
    chunks: list[bytes] = []
    while len(chunks) < READ_BATCH and (chunk := body.read(READ_CHUNK)):
        chunks.append(chunk)
    return chunks
