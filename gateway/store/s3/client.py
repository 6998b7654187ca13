"""The boto3 client, S3's errors in our terms, and :class:`S3Base`: where every call runs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from gateway.store.base import StorageError
from gateway.store.keys import check_key, check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")

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


class S3Base:
    """What every part of the S3 store shares: bucket, prefix, client, and :meth:`_call`."""

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
