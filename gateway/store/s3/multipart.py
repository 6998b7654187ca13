"""Multipart uploads on S3: create, upload and list parts, complete, abort, list uploads."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from gateway.store.base import MultipartInfo, Part, StorageError
from gateway.store.keys import check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


from gateway.store.s3.client import _NO_UPLOAD, S3Error, _MemoryBody, _unquote
from gateway.store.s3.objects import S3Objects


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


class S3Multipart(S3Objects):
    """Multipart uploads, all of their calls in one place."""

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
