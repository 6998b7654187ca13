"""Upload and download links: minting and checking, with the gateway's errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from gateway import signing
from gateway.errors import Code, GatewayError
from gateway.settings import Settings
from gateway.signing import DownloadGrant, UploadLink
from gateway.tickets.local import valid_ticket
from gateway.uploads.limit import SizeLimit, size_limit, size_text


@dataclass(frozen=True)
class MintedLink:
    url: str
    token: str
    link: UploadLink


class Links:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        *,
        limit: SizeLimit | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        # The largest file the gateway takes: a link's cap is never more (no store limit
        # is known without one, so the running service passes the limit it computed).
        self.limit = limit or size_limit(
            max_upload=settings.max_upload,
            buffer_memory=settings.buffer_memory,
            max_parts=settings.s3_max_parts,
        )

    def mint(
        self, ticket: str, *, expires_in: int | None = None, max_size: int | None = None
    ) -> MintedLink:
        if not valid_ticket(ticket):
            raise GatewayError(
                Code.BAD_REQUEST, "A ticket id is 1 to 64 letters, digits, '-' or '_'."
            )
        ttl = self.settings.link_ttl if expires_in is None else expires_in
        if ttl <= 0 or ttl > 366 * 86400:
            raise GatewayError(Code.BAD_REQUEST, "A link lives between 1 second and 366 days.")
        largest = self.limit.largest
        cap = largest if max_size is None else max_size
        if cap <= 0 or cap > largest:
            raise GatewayError(
                Code.BAD_REQUEST,
                f"The size cap must be between 1 byte and {size_text(largest)}, the largest "
                f"file this gateway accepts (set by {self.limit.reason}).",
            )
        link = UploadLink(
            ticket=ticket,
            expires_at=int(self.clock()) + ttl,
            max_size=cap,
            link_id=signing.new_link_id(),
        )
        token = signing.sign(link.claims(), self.settings.secret, signing.UPLOAD)
        return MintedLink(url=f"{self.settings.public_url}/u/{token}", token=token, link=link)

    def check_upload(self, token: str) -> UploadLink:
        """The link behind an upload token; 404 if forged, 403 if expired (no ticket named)."""
        try:
            claims = signing.verify(token, self.settings.secret, signing.UPLOAD, self.clock())
            return UploadLink.from_claims(claims)
        except signing.TokenExpired:
            raise GatewayError(Code.LINK_EXPIRED) from None
        except signing.TokenInvalid:
            raise GatewayError(Code.LINK_INVALID) from None

    def download_url(self, file_id: str, filename: str, ttl: int | None = None) -> tuple[str, int]:
        expires_at = int(self.clock()) + (self.settings.download_ttl if ttl is None else ttl)
        grant = DownloadGrant(file_id=file_id, expires_at=expires_at)
        token = signing.sign(grant.claims(), self.settings.secret, signing.DOWNLOAD)
        url = f"{self.settings.public_url}/files/{token}/{quote(filename, safe='')}"
        return url, expires_at

    def check_download(self, token: str) -> DownloadGrant:
        try:
            claims = signing.verify(token, self.settings.secret, signing.DOWNLOAD, self.clock())
            return DownloadGrant.from_claims(claims)
        except signing.TokenExpired:
            raise GatewayError(Code.DOWNLOAD_EXPIRED) from None
        except signing.TokenInvalid:
            raise GatewayError(Code.DOWNLOAD_INVALID) from None
