"""How ``gateway upload`` cuts one file into partial uploads (tus concatenation); pure logic.

A file goes up as several *streams*: contiguous byte ranges, each sent as its
own tus partial upload (``Upload-Concat: partial``) at the same time as the
others, then joined on the server by a final upload
(``Upload-Concat: final;URL1 URL2 ...``). Ranges start on chunk boundaries,
so every PATCH but a range's last carries a whole chunk, and every range but
the last holds at least :data:`MIN_RANGE` bytes (what S3 wants of every part
but the last). A file too small for two such ranges, a server that does not
offer ``concatenation``, or a file over the link's cap (refused at once as
one upload, rather than after all its partials went up) gets one ordinary
upload.

The state file remembers a file's partials as ``{"parts": [{"url", "start",
"end"}, ...], "final": url}``; entries of a single upload keep the older
shape ``{"url": url}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_RANGE = 5 * 1024 * 1024
#: ``--streams auto``: this many streams to a gateway that answers in AUTO_RTT or more.
AUTO_STREAMS = 4
#: Round trips shorter than this mean a gateway close by (the same host, network or
#: region; a busy machine's loopback can take 20 ms to answer),
#: where one stream already fills the path and joining partials would cost more than
#: it gives; longer ones mean a path where each connection is held back by its window.
AUTO_RTT = 0.030
#: Ranges start on multiples of this when requests are not chunked (each stream one
#: streamed request), so the gateway's S3 parts of every partial stay whole.
ALIGN = 16 * 1024 * 1024


@dataclass(frozen=True)
class Span:
    """Bytes ``start`` to ``end`` (exclusive) of the file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Part:
    """One partial upload: its tus URL and the file's bytes it carries."""

    url: str
    span: Span


def split(size: int, streams: int, chunk_size: int) -> list[Span]:
    """Cut ``size`` bytes into at most ``streams`` ranges of whole chunks.

    Every range but the last is at least one chunk and at least
    :data:`MIN_RANGE` bytes; the chunks are shared out as evenly as they go,
    earlier ranges taking the odd ones. One range (the whole file) when two
    do not fit.
    """
    unit = -(-MIN_RANGE // chunk_size) * chunk_size  # whole chunks, at least MIN_RANGE
    count = min(streams, size // unit)
    if count < 2:
        return [Span(0, size)]
    chunks = -(-size // chunk_size)
    base, extra = divmod(chunks, count)
    spans: list[Span] = []
    start = 0
    for index in range(count):
        end = min(size, start + (base + int(index < extra)) * chunk_size)
        spans.append(Span(start, end))
        start = end
    return spans


@dataclass(frozen=True)
class Offer:
    """What a server's ``OPTIONS`` answer says: concatenation or not, the size cap; and
    ``rtt``, the shortest round trip seen to it (seconds), when measured."""

    concatenation: bool
    max_size: int | None = None
    rtt: float | None = None

    @classmethod
    def parse(
        cls, tus_extension: str | None, tus_max_size: str | None, rtt: float | None = None
    ) -> Offer:
        names = {name.strip().lower() for name in (tus_extension or "").split(",")}
        cap = (tus_max_size or "").strip()
        return cls("concatenation" in names, int(cap) if cap.isdigit() else None, rtt)

    @property
    def far(self) -> bool:
        """Whether parallel streams pay off: a round trip of AUTO_RTT or more (or unknown)."""
        return self.rtt is None or self.rtt >= AUTO_RTT


def choose(
    size: int, *, streams: int | None, chunk_size: int, offer: Callable[[], Offer]
) -> list[Span]:
    """The ranges a file goes up in: :func:`split`'s, or the whole file as one upload
    when the server (asked through ``offer`` only if it matters) lacks concatenation or
    the file is over its cap. ``streams=None`` is ``auto``: :data:`AUTO_STREAMS` to a
    server that is far (see :attr:`Offer.far`), one stream to one close by."""
    spans = split(size, streams or AUTO_STREAMS, chunk_size)
    if len(spans) > 1:
        server = offer()
        if not server.concatenation or (server.max_size is not None and size > server.max_size):
            return [Span(0, size)]
        if streams is None and not server.far:
            return [Span(0, size)]
    return spans


def final_header(parts: list[Part]) -> str:
    """``Upload-Concat`` of the final upload: the partials' URLs in file order."""
    return "final;" + " ".join(part.url for part in parts)


def parts_entry(parts: list[Part], final: str | None = None) -> dict[str, Any]:
    """The state file's memory of a file's partials (and final, once created)."""
    entry: dict[str, Any] = {
        "parts": [{"url": p.url, "start": p.span.start, "end": p.span.end} for p in parts]
    }
    if final is not None:
        entry["final"] = final
    return entry


def read_parts(entry: Mapping[str, Any], size: int, endpoint: str) -> list[Part] | None:
    """The partials an entry remembers, if they are this link's and cover exactly
    ``size`` bytes in order; None for anything else (an older single-upload entry,
    another link, a damaged entry)."""
    raw = entry.get("parts")
    if not isinstance(raw, list) or len(raw) < 2:
        return None
    parts: list[Part] = []
    position = 0
    for item in raw:
        if not isinstance(item, dict):
            return None
        url, start, end = item.get("url"), item.get("start"), item.get("end")
        if not (isinstance(url, str) and url.startswith(endpoint)):
            return None
        if not (isinstance(start, int) and isinstance(end, int)) or start != position:
            return None
        if end <= start:
            return None
        parts.append(Part(url, Span(start, end)))
        position = end
    return parts if position == size else None


def read_final(entry: Mapping[str, Any], endpoint: str) -> str | None:
    """The final upload's URL an entry remembers, if it is this link's."""
    final = entry.get("final")
    return final if isinstance(final, str) and final.startswith(endpoint) else None
