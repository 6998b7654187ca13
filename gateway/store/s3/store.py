"""The S3 store itself: :class:`S3Store`, with its lifecycle (presigned URLs, ping, close)."""

from __future__ import annotations

import anyio
import anyio.to_thread

from gateway.store.s3.compose import S3Compose


class S3Store(S3Compose):
    """:class:`~gateway.store.base.ObjectStore` on an S3 bucket under a key prefix."""

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
