"""Parts larger than a buffer: segments, what of one is stored, and sealing one.

When a file needs parts larger than a buffer of the memory budget (see
:mod:`gateway.uploads.partsize`), part ``n`` is written as a multipart upload
of its own at ``uploads/{id}/seg.{n}``, in sub-parts that fit a buffer. The
record names the open segment's upload and how many of its sub-parts count
(``segment_id``, ``segment_committed``), as it counts the file's parts, so
the offset says exactly what is stored: the committed parts, the open
segment's committed sub-parts, and the tail after them. Once the segment
holds all of part ``n`` it is *sealed*: completed, copied into part ``n`` of
the file's upload inside the store (one UploadPartCopy), and, once part ``n``
is committed, deleted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectStore, Part, StorageError
from gateway.uploads import records
from gateway.uploads.records import UploadRecord

log = logging.getLogger("gateway.uploads")


@dataclass
class Segment:
    """Part ``part`` of an upload, written as a multipart upload of its own."""

    part: int
    upload_id: str | None  # None until its first sub-part is sent
    subs: list[Part] = field(default_factory=list)  # landed sub-parts
    committed: int = 0  # how many of them count (what the record says)
    complete: bool = False  # its object exists whole: completed, not yet copied
    created: bool = False  # its multipart upload was started by this request
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # sub-parts in flight

    def contiguous(self) -> int:
        """How many sub-parts, from the first, have landed."""
        numbers = {p.number for p in self.subs}
        count = 0
        while count + 1 in numbers:
            count += 1
        return count

    def size_of(self, count: int) -> int:
        return sum(p.size for p in self.subs if p.number <= count)


async def stored_segment(store: ObjectStore, record: UploadRecord, part: int) -> Segment:
    """What the store holds of segment ``part``: the committed run of sub-parts of the
    right sizes, or the whole segment object when it was completed but not copied."""
    segment = Segment(part=part, upload_id=record.segment_id)
    if record.segment_id is None:
        return segment
    key = records.segment_key(record.id, part)
    try:
        listed = await store.list_parts(key, record.segment_id)
    except KeyError:  # completed (then its object is there) or gone
        info = await store.head(key)
        if info is not None and info.size == record.plan.part_length(part, record.length):
            segment.complete = True
        else:
            segment.upload_id = None
        return segment
    for expected, sub in enumerate(listed, start=1):
        if expected > record.segment_committed:
            break
        if sub.number != expected or sub.size != record.plan.sub_length(
            part, expected, record.length
        ):
            break
        segment.subs.append(sub)
    segment.committed = len(segment.subs)
    return segment


def stored_size(segment: Segment, record: UploadRecord) -> int:
    """The bytes of the segment that count."""
    if segment.complete:
        return record.plan.part_length(segment.part, record.length)
    return segment.size_of(segment.committed)


def is_full(segment: Segment, record: UploadRecord) -> bool:
    """The segment holds all of its part (committed): only sealing is left."""
    count = record.plan.sub_count(segment.part, record.length)
    return segment.complete or segment.committed >= count


async def seal(store: ObjectStore, record: UploadRecord, segment: Segment, upload_id: str) -> Part:
    """Complete the segment and copy it into its part of the file's upload ``upload_id``.

    Idempotent: a segment completed by an attempt that died is copied from its object.
    The caller commits the part and then deletes the segment's object.
    """
    key = records.segment_key(record.id, segment.part)
    length = record.plan.part_length(segment.part, record.length)
    if not segment.complete:
        assert segment.upload_id is not None
        subs = sorted(segment.subs, key=lambda p: p.number)
        try:
            await store.complete_multipart(key, segment.upload_id, subs)
        except KeyError:  # completed already?
            info = await store.head(key)
            if info is None or info.size != length:
                raise StorageError(f"segment {key!r} vanished before it was copied") from None
        segment.complete = True
    try:
        part = await store.copy_part(records.data_key(record.id), upload_id, segment.part, key)
    except NotImplementedError:
        log.warning(
            "upload %s needs parts larger than a buffer and the S3 server cannot copy parts "
            "(UploadPartCopy): set GATEWAY_MAX_UPLOAD to at most GATEWAY_S3_MAX_PARTS "
            "times half of GATEWAY_BUFFER_MEMORY, or raise GATEWAY_BUFFER_MEMORY, so that "
            "every part fits a buffer",
            record.id,
        )
        raise GatewayError(
            Code.TOO_LARGE,
            "The file is larger than the storage server can take from this gateway "
            "(it cannot copy parts). What was received is kept.",
        ) from None
    if part.size != length:
        raise StorageError(f"segment {key!r} was copied as {part.size} bytes, not {length}")
    return part
