"""What an upload has stored, and so its offset: derived from the store, never from memory.

An upload's bytes live in these places: the committed run of full parts of
its multipart upload, the open segment's committed sub-parts when the next
part is larger than a buffer (:mod:`gateway.uploads.segments`), a tail object
holding the bytes past the last full part or sub-part, and, once finished,
the data object itself. Any replica reads the same
answer, so a request may resume anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import Code, GatewayError
from gateway.store.base import ObjectInfo, ObjectStore, Part
from gateway.uploads import records
from gateway.uploads.partsize import PartPlan
from gateway.uploads.records import UploadRecord
from gateway.uploads.segments import Segment, stored_segment, stored_size


@dataclass(frozen=True)
class Stored:
    """An upload's stored bytes: full parts, the tail, and the offset they make."""

    parts: list[Part]
    tail: bytes | None
    offset: int
    completed: ObjectInfo | None = None  # the data object exists: finished, maybe unrecorded
    segment: Segment | None = None  # the next part, when it is a segment
    tail_key: str | None = None  # where ``tail`` is stored


def committed_run(listed: Sequence[Part], committed: int, plan: PartPlan) -> list[Part]:
    """The parts that count: numbered 1, 2, 3... up to ``committed``, each of its planned size.

    A part written past them (by a request that died or failed its checksum)
    is ignored and will be written again.
    """
    good: list[Part] = []
    for expected, part in enumerate(listed, start=1):
        if expected > committed:
            break
        if part.number != expected or part.size != plan.size_of(expected):
            break
        good.append(part)
    return good


async def stored(store: ObjectStore, record: UploadRecord) -> Stored:
    """What ``record``'s upload has stored now (GONE if its parts vanished)."""
    # The parts and the tails are listed at once: this runs before every request's
    # first byte is taken, so each round trip saved is latency saved per request.
    listed, tail_infos = await asyncio.gather(
        listed_parts(store, record), store.list(records.tail_prefix(record.id))
    )
    if listed is None:
        done = await store.head(records.data_key(record.id))
        if done is None:
            raise GatewayError(Code.GONE, "This upload's stored parts are gone.")
        return Stored(parts=[], tail=None, offset=done.size, completed=done)
    good = committed_run(listed, record.committed, record.plan)
    next_part = len(good) + 1
    offset = sum(p.size for p in good)
    segment: Segment | None = None
    tail_key = records.tail_key(record.id, next_part)
    tail_room = record.plan.size_of(next_part)
    if record.plan.segmented(next_part, record.length):
        segment = await stored_segment(store, record, next_part)
        offset += stored_size(segment, record)
        sub = segment.committed + 1
        tail_key = records.sub_tail_key(record.id, next_part, sub)
        tail_room = 0 if segment.complete else record.plan.sub_length(next_part, sub, record.length)
    tail: bytes | None = None
    for info in tail_infos:
        if info.key == tail_key and info.size < tail_room:
            tail = await store.get(info.key)
    offset += len(tail) if tail else 0
    if record.multipart_id is None and tail is None and segment is None:
        done = await store.head(records.data_key(record.id))
        if done is not None:
            return Stored(parts=[], tail=None, offset=done.size, completed=done)
    return Stored(
        parts=good, tail=tail, offset=offset, segment=segment, tail_key=tail_key if tail else None
    )


async def listed_parts(store: ObjectStore, record: UploadRecord) -> list[Part] | None:
    """The upload's stored parts; None when its multipart upload is gone (completed?)."""
    if record.multipart_id is None:
        return []
    try:
        return await store.list_parts(records.data_key(record.id), record.multipart_id)
    except KeyError:
        return None
