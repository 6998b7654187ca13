"""Joining objects inside the S3 server: parts copied with UploadPartCopy."""

from __future__ import annotations

import builtins
import contextlib
from typing import Any

import anyio
import anyio.to_thread

from gateway.store.base import ObjectInfo, Part, StorageError
from gateway.store.compose import Piece, PlannedPart
from gateway.store.compose import plan as compose_plan
from gateway.store.s3.client import _NO_UPLOAD, _NOT_FOUND, S3Error, _unquote, log
from gateway.store.s3.multipart import S3Multipart, _part_number

COMPOSE_CONCURRENCY = 4  # parts copied (or sent) at once while composing
# The largest range one UploadPartCopy copies. S3 allows 5 GiB, but the server answers only
# once the copy is done, and at a few hundred MB/s a 5 GiB copy would outlast the client's
# 60 s read timeout; 1 GiB keeps each well inside it and a 5 TiB file within 10,000 parts.
COPY_PART = 1024 * 1024 * 1024


class S3Compose(S3Multipart):
    """:meth:`compose`, and the part copies it is made of."""

    async def compose(
        self, key: str, sources: builtins.list[str], content_type: str | None = None
    ) -> str:
        """Join objects with a multipart upload whose parts are copied inside the server.

        :func:`gateway.store.compose.plan` says which ranges are copied
        (UploadPartCopy, conditional on the source's ETag) and which short
        pieces are read and sent. A server without UploadPartCopy raises
        NotImplementedError (remembered), so the caller can copy the bytes
        itself.
        """
        if self._part_copy is False:
            raise NotImplementedError("the S3 server does not copy parts (UploadPartCopy)")
        infos: builtins.list[ObjectInfo] = []
        for source in sources:
            info = await self.head(source)
            if info is None:
                raise KeyError(source)
            infos.append(info)
        try:
            planned = compose_plan([info.size for info in infos], max_part=COPY_PART)
        except ValueError as exc:
            raise StorageError(f"composing {key!r}: {exc}") from None
        if not planned or (len(planned) == 1 and not planned[0].copy):
            data = await self._gather(planned[0], infos) if planned else b""
            return await self.put(key, data, content_type=content_type)
        upload_id = await self.create_multipart(key, content_type)
        slots = anyio.Semaphore(COMPOSE_CONCURRENCY)
        sending = anyio.Lock()  # one gathered part in memory at a time
        parts: builtins.list[Part] = []

        async def one(number: int, part: PlannedPart) -> None:
            async with slots:
                if part.copy:
                    parts.append(await self._copy_part(key, upload_id, number, part, infos))
                    return
                async with sending:
                    data = await self._gather(part, infos)
                    parts.append(await self.upload_part(key, upload_id, number, memoryview(data)))

        try:
            try:
                async with anyio.create_task_group() as group:
                    for number, part in enumerate(planned, start=1):
                        group.start_soon(one, number, part)
            except BaseExceptionGroup as failed:
                # The first part that failed says why (KeyError: a source is gone).
                raise failed.exceptions[0] from None
            return await self.complete_multipart(key, upload_id, parts)
        except BaseException:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):
                    await self.abort_multipart(key, upload_id)
            raise

    async def copy_part(self, key: str, upload_id: str, number: int, source_key: str) -> Part:
        """Part ``number`` becomes the whole object ``source_key`` (one UploadPartCopy)."""
        if self._part_copy is False:
            raise NotImplementedError("the S3 server does not copy parts (UploadPartCopy)")
        info = await self.head(source_key)
        if info is None:
            raise KeyError(source_key)
        if not 0 < info.size <= 5 * 1024**3:  # S3 copies 1 byte to 5 GiB into a part
            raise StorageError(f"copying {source_key!r} into a part: {info.size} bytes")
        planned = PlannedPart(pieces=(Piece(source=0, start=0, end=info.size),), copy=True)
        return await self._copy_part(key, upload_id, number, planned, [info])

    async def _copy_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        part: PlannedPart,
        infos: builtins.list[ObjectInfo],
    ) -> Part:
        (piece,) = part.pieces
        source = infos[piece.source]
        condition: dict[str, Any] = {"CopySourceIfMatch": f'"{source.etag}"'}
        try:
            try:
                response = await self._copy(key, upload_id, number, source.key, piece, condition)
            except S3Error as exc:
                if exc.status != 412 or await self.head(source.key) != source:
                    raise
                # Unchanged, yet the condition failed: Swift's s3api does not match a
                # multipart object's ETag in If-Match. The HEAD just vouched for it.
                response = await self._copy(key, upload_id, number, source.key, piece, {})
        except S3Error as exc:
            if exc.code == "NotImplemented" or exc.status == 501:
                if self._part_copy is None:
                    log.warning("the S3 server does not copy parts (UploadPartCopy): %s", exc)
                self._part_copy = False
                raise NotImplementedError(str(exc)) from exc
            if exc.code in _NOT_FOUND or exc.status == 412:
                raise KeyError(source.key) from None  # gone or replaced since we looked
            if exc.code in _NO_UPLOAD:
                raise StorageError(f"composing {key!r}: the multipart upload vanished") from exc
            raise
        self._part_copy = True
        result = response.get("CopyPartResult", {})
        return Part(number=number, size=part.size, etag=_unquote(result.get("ETag", "")))

    async def _copy(
        self,
        key: str,
        upload_id: str,
        number: int,
        source: str,
        piece: Piece,
        condition: dict[str, Any],
    ) -> Any:
        return await self._call(
            self._client.upload_part_copy,
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=upload_id,
            PartNumber=_part_number(number),
            CopySource={"Bucket": self.bucket, "Key": self._key(source)},
            CopySourceRange=f"bytes={piece.start}-{piece.end - 1}",
            **condition,
        )

    async def _gather(self, part: PlannedPart, infos: builtins.list[ObjectInfo]) -> bytes:
        """A sent part's bytes, read from its sources."""
        data = bytearray()
        for piece in part.pieces:
            source = infos[piece.source].key
            before = len(data)
            async for chunk in self.read(source, piece.start, piece.end):
                data += chunk
            if len(data) - before != piece.size:
                raise KeyError(source)  # shorter than it was a moment ago
        return bytes(data)
