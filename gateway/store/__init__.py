"""Object storage: the :class:`ObjectStore` seam and the two stores behind it.

:func:`open_store` picks the store the settings name; the S3 store (and with
it boto3) is only imported when it is chosen.
"""

from __future__ import annotations

from gateway.settings import Settings
from gateway.store.base import (
    MultipartInfo,
    ObjectInfo,
    ObjectStore,
    Part,
    PreconditionFailed,
    StorageError,
)

__all__ = [
    "MultipartInfo",
    "ObjectInfo",
    "ObjectStore",
    "Part",
    "PreconditionFailed",
    "StorageError",
    "open_store",
]


def open_store(settings: Settings) -> ObjectStore:
    """The store ``settings.storage`` names: ``file`` under the data dir, or ``s3``."""
    if settings.storage == "file":
        from gateway.store.file import FileStore

        return FileStore(settings.data_dir / "store")
    if settings.storage == "s3":
        from gateway.store.s3 import S3Store

        if not settings.s3_bucket:
            raise ValueError("GATEWAY_S3_BUCKET: required when GATEWAY_STORAGE=s3")
        return S3Store(
            settings.s3_bucket,
            settings.s3_prefix,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
            checksum=settings.s3_checksum,
        )
    raise ValueError(f"GATEWAY_STORAGE: unknown storage {settings.storage!r}")
