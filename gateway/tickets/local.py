"""The embedded ticket system: tickets kept as JSON under the data dir.

One process owns the data dir (the embedded default runs one process), so an
asyncio lock per ticket is enough; files are replaced atomically. Attachment
bytes are copied from the store into ``tickets/files/`` as a stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiofiles

from gateway.tickets.base import NewComment, TicketError

TICKET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_ticket(ticket: str) -> bool:
    return TICKET_ID.fullmatch(ticket) is not None


class LocalTickets:
    name = "local"
    max_comment_attachments = 1 << 40

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self._locks: dict[str, asyncio.Lock] = {}

    def _path(self, ticket: str) -> Path:
        if not valid_ticket(ticket):
            raise TicketError(f"invalid ticket id {ticket!r}", retryable=False, status=404)
        return self.root / f"{ticket}.json"

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except FileNotFoundError:
            return {"id": path.stem, "comments": []}

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    async def ticket(self, ticket: str) -> dict[str, Any]:
        return await asyncio.to_thread(self._read, self._path(ticket))

    def attachment_path(self, attachment_id: str) -> Path | None:
        if not re.fullmatch(r"[a-f0-9]{32}", attachment_id):
            return None
        path = self.files / attachment_id
        return path if path.is_file() else None

    async def post_comment(self, ticket: str, comment: NewComment) -> None:
        path = self._path(ticket)
        await asyncio.to_thread(self.files.mkdir, parents=True, exist_ok=True)
        attachments = []
        for source in comment.attachments:
            attachment_id = secrets.token_hex(16)
            target = self.files / attachment_id
            size = 0
            async with aiofiles.open(target, "wb") as out:
                async for chunk in source.open():
                    await out.write(chunk)
                    size += len(chunk)
            if size != source.size:
                raise TicketError(
                    f"attachment {source.filename!r} read {size} of {source.size} bytes",
                    retryable=True,
                )
            attachments.append(
                {
                    "id": attachment_id,
                    "file_name": source.filename,
                    "size": size,
                    "content_type": source.content_type,
                }
            )
        lock = self._locks.setdefault(ticket, asyncio.Lock())
        async with lock:
            data = await asyncio.to_thread(self._read, path)
            data["comments"].append(
                {
                    "id": len(data["comments"]) + 1,
                    "body": comment.body,
                    "public": comment.public,
                    "created_at": time.time(),
                    "attachments": attachments,
                }
            )
            await asyncio.to_thread(self._write, path, data)

    async def find_markers(self, ticket: str, markers: Sequence[str]) -> set[str]:
        data = await self.ticket(ticket)
        bodies = [c.get("body", "") for c in data["comments"]]
        return {m for m in markers if any(m in body for body in bodies)}

    async def ping(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise TicketError(f"ticket directory {self.root} is not writable", retryable=False)

    async def close(self) -> None:
        return None
