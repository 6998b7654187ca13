"""The largest file this gateway takes: one number, computed once (pure functions).

A file is cut into at most ``GATEWAY_S3_MAX_PARTS`` parts (10,000, S3's limit,
unless the store allows fewer) of at most 5 GiB. A part is held in memory
while it uploads only when it fits a buffer (half of ``GATEWAY_BUFFER_MEMORY``);
a larger part is written as a segment of buffered sub-parts and copied into
place inside the store, so the memory budget does not bound the file size.
The largest file is the least of ``GATEWAY_MAX_UPLOAD``, the parts limit and
the store's own largest object where it has one. Every surface says that
number: ``Tus-Max-Size``, the upload page, the 413 messages, link minting,
``/readyz`` and the start-up log.

A body of unknown length (a chunked ``PUT``, a form's file, a tus upload with
``Upload-Defer-Length``) cannot size its parts up front: they start small and
grow as it arrives, never past a buffer, so the parts hold less. That smaller
number is ``streamed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.errors import Code, GatewayError
from gateway.units import format_size
from gateway.uploads.partsize import MAX_PART, MAX_PARTS, largest_part, plan_parts


@runtime_checkable
class SizeLimitedStore(Protocol):
    """A store whose objects have a largest size of their own."""

    @property
    def max_object_size(self) -> int: ...


def size_text(n: int) -> str:
    """``1,342,177,280,000 bytes (1.2 TiB)``: exact for scripts, readable for people."""
    return f"{n:,} bytes ({format_size(n)})"


def too_large(length: int | None, largest: int, who: str = "this gateway") -> GatewayError:
    """The 413 of a file past ``largest``, naming it in bytes and human units."""
    if length is None:
        message = f"The file is larger than {who} accepts: at most {size_text(largest)}."
    else:
        message = f"The file is {length:,} bytes; {who} accepts at most {size_text(largest)}."
    return GatewayError(Code.TOO_LARGE, message)


@dataclass(frozen=True)
class SizeLimit:
    """The largest file accepted, and why."""

    largest: int  # the largest file whose length is declared up front
    streamed: int  # the largest body of unknown length
    reason: str  # which setting or limit decides ``largest``
    parts: int = MAX_PARTS  # the most parts the store takes in one multipart upload

    def cap(self, link_max: int) -> int:
        """What a link with size cap ``link_max`` really accepts."""
        return min(link_max, self.largest)

    def describe(self) -> str:
        """One line for the start-up log."""
        text = f"largest file accepted: {size_text(self.largest)}, set by {self.reason}"
        if self.streamed < self.largest:
            text += (
                f"; a body of unknown length (chunked PUT, form, tus Upload-Defer-Length) "
                f"is taken up to {size_text(self.streamed)}"
            )
        return text


def size_limit(
    *,
    max_upload: int,
    buffer_memory: int,
    store_max: int | None = None,
    max_parts: int = MAX_PARTS,
) -> SizeLimit:
    """The largest file for these settings and this store (``store_max``: its own limit)."""
    if max_upload <= 0 or buffer_memory <= 0 or max_parts <= 0:
        raise ValueError("sizes must be positive")
    part = largest_part(buffer_memory, max_parts)
    parts_setting = (
        "S3's limits" if max_parts == MAX_PARTS else f"GATEWAY_S3_MAX_PARTS={max_parts:,}"
    )
    parts_reason = f"{max_parts:,} parts of at most {format_size(part)} ({parts_setting})"
    if part < MAX_PART:
        parts_reason += (
            f"; a part is at most {max_parts:,} sub-parts of half of "
            f"GATEWAY_BUFFER_MEMORY={format_size(buffer_memory)}"
        )
    # GATEWAY_MAX_UPLOAD first: on a tie the setting is the reason given.
    bounds = [(max_upload, f"GATEWAY_MAX_UPLOAD={format_size(max_upload)}")]
    bounds.append((part * max_parts, parts_reason))
    if store_max is not None:
        bounds.append((store_max, f"the store's largest object ({format_size(store_max)})"))
    largest, reason = min(bounds, key=lambda bound: bound[0])
    if largest < max_upload:
        reason += f"; GATEWAY_MAX_UPLOAD={format_size(max_upload)} is more"
    unknown = plan_parts(None, buffer_memory, parts=max_parts)
    streamed = min(largest, unknown.capacity(max_parts))
    return SizeLimit(largest=largest, streamed=streamed, reason=reason, parts=max_parts)


def store_limit(store: object) -> int | None:
    """The store's own largest object, if it declares one (wrappers expose ``inner``)."""
    while store is not None:
        if isinstance(store, SizeLimitedStore):
            return int(store.max_object_size)
        store = getattr(store, "inner", None)
    return None
