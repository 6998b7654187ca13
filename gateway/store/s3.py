"""The S3 store: :class:`ObjectStore` on any S3-compatible server, via boto3.

This is the only module that imports boto3/botocore. boto3 is blocking, so
every call goes through :meth:`S3Store._call`, which runs it in a worker
thread under one :class:`anyio.CapacityLimiter`: the event loop never blocks,
and at most ``max_concurrency`` requests are in flight (the connection pool is
sized to match, so no request waits for a socket while holding a slot).

Where boto3's errors meet ours they become :class:`StorageError` (after
boto3's own retries), ``NoSuchKey`` becomes ``None`` for ``get``/``head``, and
``NoSuchUpload`` becomes :class:`KeyError`. ETags are returned without the
quotes S3 puts around them.

Endpoint, credentials and region come from boto3's own settings
(``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_REGION`` ...).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from gateway.store.base import (
    MultipartInfo,
    ObjectInfo,
    Part,
    PreconditionFailed,
    StorageError,
)
from gateway.store.compose import Piece, PlannedPart
from gateway.store.compose import plan as compose_plan
from gateway.store.keys import check_key, check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

T = TypeVar("T")

READ_CHUNK = 1024 * 1024
COMPOSE_CONCURRENCY = 4  # parts copied (or sent) at once while composing
# The largest range one UploadPartCopy copies. S3 allows 5 GiB, but the server answers only
# once the copy is done, and at a few hundred MB/s a 5 GiB copy would outlast the client's
# 60 s read timeout; 1 GiB keeps each well inside it and a 5 TiB file within 10,000 parts.
COPY_PART = 1024 * 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
# Ceph RGW answers ListParts for an aborted or completed upload with NoSuchKey; for a
# multipart call on an upload id that can only mean the upload is gone.
_NO_UPLOAD = frozenset({"NoSuchUpload", "NoSuchKey"})

log = logging.getLogger("gateway.store")


class S3Error(StorageError):
    """A failed S3 request; ``code`` is S3's error code (or ``Unavailable``)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def build_client(max_concurrency: int = 16, **client_kwargs: Any) -> S3Client:
    """A boto3 S3 client configured for large parts over plain HTTP too.

    Payload signing is off: over http botocore would otherwise SHA-256 every
    part before sending it. Integrity still holds because every write carries
    a checksum header the server verifies (see :class:`S3Store`'s
    ``checksum``). ``client_kwargs`` (endpoint, keys, region) override boto3's
    environment, for tests and tools.
    """
    config = Config(
        max_pool_connections=max(max_concurrency, 10),
        connect_timeout=10,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 5},
        s3={"payload_signing_enabled": False, "addressing_style": "path"},
        tcp_keepalive=True,
        # SigV4 for presigned download URLs too (botocore presigns with SigV2 otherwise).
        signature_version="s3v4",
    )
    session = boto3.session.Session()
    client: S3Client = session.client("s3", config=config, **client_kwargs)
    return client


MIN_READ = 1024 * 1024
CHECKSUMS = ("CRC32C", "CRC32")


class _MemoryBody:
    """A seekable file-like view of a memoryview, so a part is sent uncopied.

    botocore refuses a bare memoryview and copies bytes-likes into a BytesIO;
    this reader hands out small slices instead. Seeking back lets botocore
    compute the checksum first and rewind on retries.
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        self._pos = 0

    def read(self, size: int | None = -1) -> memoryview:
        # urllib3 asks for 16 KiB at a time; handing out slices of at least 1 MiB (its
        # send loop and botocore's checksum loop take any length) cuts the Python-level
        # send calls per 16 MiB part from ~1,000 to 16, and slices are views, not copies.
        remaining = len(self._view) - self._pos
        if size is None or size < 0:
            size = remaining
        size = min(remaining, max(size, MIN_READ))
        chunk = self._view[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            pos = offset
        elif whence == 1:
            pos = self._pos + offset
        elif whence == 2:
            pos = len(self._view) + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view)


def _unquote(etag: str) -> str:
    return etag.strip('"')


def _part_number(number: int) -> int:
    if not 1 <= number <= 10000:
        raise ValueError(f"part number must be 1..10000, got {number}")
    return number


def _latest(number: int, versions: dict[str, tuple[float, Part]]) -> Part:
    """The one current version of a part.

    S3 replaces a re-uploaded part, but some servers (SeaweedFS 4.48) keep and
    list every version, and complete whichever ETag they are given. Identical
    re-uploads (a retried request) collapse by ETag; of differing versions the
    newest wins. If their times tie we cannot tell which is current: the part
    is reported with no ETag and size -1, so callers treat it as not stored
    (the upload engine stops counting there and the client sends it again,
    which makes a newer version) instead of failing the whole listing.
    """
    if len(versions) == 1:
        return next(iter(versions.values()))[1]
    ordered = sorted(versions.values(), key=lambda version: version[0])
    if ordered[-1][0] == ordered[-2][0]:
        return Part(number=number, size=-1, etag="")
    return ordered[-1][1]


class S3Store:
    """:class:`~gateway.store.base.ObjectStore` on an S3 bucket under a key prefix."""

    name = "s3"
    page_size = 1000  # S3's largest page; smaller in tests to exercise paging

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        max_concurrency: int = 16,
        checksum: str = "CRC32C",
        client: S3Client | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("bucket must not be empty")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self._sse: dict[str, Any] = {}
        if sse:
            self._sse["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._sse["SSEKMSKeyId"] = sse_kms_key_id
        if checksum not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {', '.join(CHECKSUMS)}, got {checksum!r}")
        # Every write carries this checksum for the server to verify. CRC32C, computed by
        # awscrt with the CPU's CRC instruction, costs a quarter of zlib's CRC32 (botocore's
        # default) per byte; CRC32 is there for servers that do not know CRC32C.
        self._checksum: dict[str, Any] = {"ChecksumAlgorithm": checksum}
        self._client = client if client is not None else build_client(max_concurrency)
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        # None until the server has answered a conditional put; False once it refused one.
        self._conditional_put: bool | None = None
        self._absent_locks: dict[str, anyio.Lock] = {}
        # None until the server has copied a part (UploadPartCopy); False once it refused.
        self._part_copy: bool | None = None

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- the one place boto3 runs ---------------------------------------------

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Run one blocking boto3 call in a worker thread, translating errors."""
        operation = getattr(fn, "__name__", "request")
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, **kwargs), limiter=self._limiter
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "Unknown")
            message = str(error.get("Message") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            raise S3Error(
                code,
                status,
                f"S3 {operation} on bucket {self.bucket!r}: {code} ({status}) {message}",
            ) from exc
        except ParamValidationError:
            raise  # a bug in our call, not a storage failure
        except BotoCoreError as exc:
            raise S3Error(
                "Unavailable", 0, f"S3 {operation} on bucket {self.bucket!r}: {exc}"
            ) from exc

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _strip(self, full_key: str) -> str:
        return full_key[len(self.prefix) :]

    # -- whole objects ----------------------------------------------------------

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
        try:
            while True:
                chunk = await self._call(body.read, amt=READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    # -- multipart ----------------------------------------------------------------

    async def create_multipart(self, key: str, content_type: str | None = None) -> str:
        extra: dict[str, Any] = dict(self._sse)
        if content_type:
            extra["ContentType"] = content_type
        response = await self._call(
            self._client.create_multipart_upload, Bucket=self.bucket, Key=self._key(key), **extra
        )
        return response["UploadId"]

    async def upload_part(self, key: str, upload_id: str, number: int, data: memoryview) -> Part:
        size = data.nbytes
        try:
            response = await self._call(
                self._client.upload_part,
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                PartNumber=_part_number(number),
                Body=_MemoryBody(data),
                ContentLength=size,
                **self._checksum,
            )
        except S3Error as exc:
            if exc.code in _NO_UPLOAD:
                raise KeyError(upload_id) from None
            raise
        return Part(number=number, size=size, etag=_unquote(response["ETag"]))

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[Part]:
        full_key = self._key(key)
        versions: dict[int, dict[str, tuple[float, Part]]] = {}
        marker = 0
        while True:
            try:
                page = await self._call(
                    self._client.list_parts,
                    Bucket=self.bucket,
                    Key=full_key,
                    UploadId=upload_id,
                    MaxParts=self.page_size,
                    PartNumberMarker=marker,
                )
            except S3Error as exc:
                if exc.code in _NO_UPLOAD:
                    raise KeyError(upload_id) from None
                raise
            for item in page.get("Parts", []):
                part = Part(
                    number=item["PartNumber"], size=item["Size"], etag=_unquote(item["ETag"])
                )
                modified = item["LastModified"].timestamp() if "LastModified" in item else 0.0
                versions.setdefault(part.number, {})[part.etag] = (modified, part)
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                break
            marker = next_marker
        if versions and await self._completed(key, upload_id):
            raise KeyError(upload_id)
        return [_latest(number, versions[number]) for number in sorted(versions)]

    async def _completed(self, key: str, upload_id: str) -> bool:
        """Whether an upload that still lists its parts was in fact completed.

        OpenStack Swift's s3api keeps answering ListParts (and a repeated
        Complete) for a completed upload, so that a retried Complete succeeds;
        S3 answers NoSuchUpload. The upload is done when an object exists at
        its key and the upload is no longer listed as in progress. For an
        upload in progress under a fresh key this costs one HEAD that finds
        nothing.
        """
        if await self.head(key) is None:
            return False
        return all(m.upload_id != upload_id for m in await self.list_multipart(key))

    async def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[Part]) -> str:
        ordered = sorted(parts, key=lambda part: part.number)
        completed: list[CompletedPartTypeDef] = [
            {"PartNumber": part.number, "ETag": f'"{_unquote(part.etag)}"'} for part in ordered
        ]
        try:
            response = await self._call(
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": completed},
            )
        except S3Error as exc:
            if exc.code in _NO_UPLOAD:
                raise KeyError(upload_id) from None
            # Ceph RGW 16 answers Complete on an aborted upload with 500 InternalError
            # "This multipart completion is already in progress"; ask whether it is gone.
            if exc.status >= 500 and await self._upload_gone(key, upload_id):
                raise KeyError(upload_id) from None
            raise
        etag = _unquote(response.get("ETag") or "")
        if etag:
            return etag
        # Ceph RGW answers with an empty ETag; HEAD reports the real one.
        info = await self.head(key)
        if info is None:
            raise StorageError(f"S3 object {key!r} is missing right after completing its upload")
        return info.etag

    async def _upload_gone(self, key: str, upload_id: str) -> bool:
        try:
            await self.list_parts(key, upload_id)
        except KeyError:
            return True
        except StorageError:
            return False
        return False

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=upload_id,
            )
        except S3Error as exc:
            if exc.code not in _NO_UPLOAD and exc.status != 404:
                raise

    async def list_multipart(self, prefix: str) -> builtins.list[MultipartInfo]:
        full_prefix = self.prefix + check_prefix(prefix)
        found: list[MultipartInfo] = []
        markers: dict[str, Any] = {}
        while True:
            page = await self._call(
                self._client.list_multipart_uploads,
                Bucket=self.bucket,
                Prefix=full_prefix,
                MaxUploads=self.page_size,
                **markers,
            )
            for item in page.get("Uploads", []):
                full_key = item.get("Key", "")
                if not full_key.startswith(full_prefix):
                    continue
                found.append(
                    MultipartInfo(
                        key=self._strip(full_key),
                        upload_id=item.get("UploadId", ""),
                        initiated=item["Initiated"].timestamp() if "Initiated" in item else 0.0,
                    )
                )
            key_marker = page.get("NextKeyMarker")
            upload_marker = page.get("NextUploadIdMarker")
            if not page.get("IsTruncated") or not (key_marker or upload_marker):
                break
            new_markers = {"KeyMarker": key_marker or "", "UploadIdMarker": upload_marker or ""}
            if new_markers == markers:
                break
            markers = new_markers
        found.sort(key=lambda info: (info.key, info.initiated))
        return found

    # -- composing -------------------------------------------------------------------

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

    # -- lifecycle -----------------------------------------------------------------

    async def housekeep(self) -> int:
        return 0  # nothing of the store's own: stale multipart uploads are listed and aborted

    async def presign_get(
        self, key: str, *, expires_in: int, disposition: str, content_type: str
    ) -> str | None:
        """A SigV4 presigned GetObject URL (computed locally: no request to S3)."""
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ResponseContentDisposition": disposition,
            "ResponseContentType": content_type,
        }
        url: str = await self._call(
            self._client.generate_presigned_url,
            ClientMethod="get_object",
            Params=params,
            ExpiresIn=expires_in,
        )
        return url

    async def ping(self) -> None:
        await self._call(self._client.head_bucket, Bucket=self.bucket)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)
