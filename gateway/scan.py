"""Malware scanning of finished files with clamd, before they are delivered.

A file is streamed to clamd with the ``zINSTREAM`` command: each chunk goes
out prefixed by its length as 4 big-endian bytes, a zero length ends the
stream, and clamd answers with one NUL-terminated line. Nothing is written
to local disk and at most one chunk is held here, so scanning a file of any
size costs the same memory.

Failures come in two kinds the caller must treat differently:

* :class:`ScannerUnavailable`: clamd could not be reached or stopped
  answering. Nothing was learned about the file; wait and retry (``/readyz``
  reports it through :meth:`Scanner.ping`).
* :class:`ScannerError`: clamd answered but did not scan the file, e.g.
  ``INSTREAM size limit exceeded. ERROR``. Retrying gives the same answer, and
  the file must never be treated as clean.

They share the base :class:`ScanFailure` but neither is a subclass of the
other, so an ``except`` for one cannot swallow the other by accident.

A file larger than clamd scans whole is never called clean. libclamav scans at
most 2 GiB - 1 of a file (less where clamd.conf says so) and, without
``AlertExceedsMax``, answers ``OK`` for a larger file even with malware at its
start. So :func:`scan_file` sends only the first ``max_scan`` bytes of a larger
file and turns the answer into a :class:`Verdict`: anything found is found,
but an ``OK`` for a file past the limit is ``not_scanned:too_large``, as are
clamd's own ``Heuristics.Limits.Exceeded`` and stream-length answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from gateway.errors import ConfigError

__all__ = [
    "CLAMD_MAX_SCAN",
    "CLEAN",
    "NOT_SCANNED_TOO_LARGE",
    "ClamdScanner",
    "ScanFailure",
    "ScanResult",
    "Scanner",
    "ScannerError",
    "ScannerUnavailable",
    "TcpAddress",
    "UnixAddress",
    "Verdict",
    "classify",
    "describe",
    "open_scanner",
    "parse_address",
    "parse_reply",
    "scan_file",
]

MiB = 1024 * 1024
#: clamd's default StreamMaxLength is 25 MiB and its chunk reads are far
#: smaller; 1 MiB chunks keep each write modest without many syscalls.
DEFAULT_CHUNK_SIZE = MiB
_MAX_CHUNK_SIZE = 2**31 - 1  # the length prefix is a signed 32-bit value in clamd
_END_OF_STREAM = struct.pack(">I", 0)


class ScanFailure(Exception):
    """Base of the two ways a scan can fail without a verdict."""


class ScannerError(ScanFailure):
    """clamd answered but did not scan the file; never treat the file as clean."""


class ScannerUnavailable(ScanFailure):
    """clamd could not be reached or stopped answering; retry later."""


@dataclass(frozen=True)
class ScanResult:
    """The verdict on one file. ``signature`` names what was found, if anything."""

    clean: bool
    signature: str | None = None

    @property
    def limit_exceeded(self) -> bool:
        """clamd gave up on the file at one of its size limits instead of scanning it all.

        Only reported with ``AlertExceedsMax yes`` in clamd.conf; without it, a
        file over ``MaxFileSize`` or ``MaxScanSize`` (libclamav caps both at
        2 GiB - 1) comes back ``OK`` even with malware at its very start.
        """
        return (self.signature or "").startswith("Heuristics.Limits.Exceeded")


class Scanner(Protocol):
    """What the delivery pipeline needs from a malware scanner."""

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        """Scan the bytes ``chunks`` yields, in order, as one file."""
        ...

    async def ping(self) -> None:
        """Return if the scanner answers; raise :class:`ScannerUnavailable` if not."""
        ...


# -- pure parts -------------------------------------------------------------

#: libclamav scans at most 2 GiB - 1 of one file, whatever clamd.conf says.
CLAMD_MAX_SCAN = 2**31 - 1
CLEAN = "clean"
NOT_SCANNED_TOO_LARGE = "not_scanned:too_large"
INFECTED = "infected"
#: What clamd answers when a stream passes its StreamMaxLength.
_STREAM_LIMIT_REPLY = "size limit exceeded"


@dataclass(frozen=True)
class Verdict:
    """What a receipt's ``scan`` says of one file, and why in words.

    ``value`` is ``clean``, ``infected:SIGNATURE`` or ``not_scanned:too_large``;
    ``limit`` is the scanner's limit in bytes when the file went past it.
    """

    value: str
    limit: int | None = None

    @property
    def clean(self) -> bool:
        return self.value == CLEAN

    @property
    def infected(self) -> bool:
        return self.value.startswith(INFECTED + ":")

    @property
    def too_large(self) -> bool:
        return self.value == NOT_SCANNED_TOO_LARGE


def describe(value: str, limit: int | None) -> str:
    """The words receipts, comments and the audit log use for a ``scan`` value."""
    if value == NOT_SCANNED_TOO_LARGE:
        where = f" ({limit} bytes)" if limit else ""
        return f"not scanned: larger than the scanner's limit{where}"
    if value.startswith(INFECTED + ":"):
        return f"malware detected ({value.split(':', 1)[1]})"
    return value


def classify(outcome: ScanResult | ScannerError, size: int, max_scan: int) -> Verdict:
    """Turn clamd's answer on (the first ``max_scan`` bytes of) a ``size``-byte file into a verdict.

    Only an explicit OK for a file no larger than ``max_scan`` is clean; an OK
    for a larger file, a limit heuristic or a stream-length error is
    ``not_scanned:too_large``; a signature found is infected wherever it was;
    any other error leaves the file unscannable, which counts as infected.
    """
    if isinstance(outcome, ScannerError):
        if _STREAM_LIMIT_REPLY in str(outcome).lower():
            return Verdict(NOT_SCANNED_TOO_LARGE, min(size, max_scan))
        return Verdict(f"{INFECTED}:unscannable ({outcome})")
    if outcome.limit_exceeded:
        return Verdict(NOT_SCANNED_TOO_LARGE, max_scan if size > max_scan else None)
    if not outcome.clean:
        return Verdict(f"{INFECTED}:{outcome.signature}")
    if size > max_scan:
        return Verdict(NOT_SCANNED_TOO_LARGE, max_scan)
    return Verdict(CLEAN)


def parse_reply(text: str) -> ScanResult:
    """Turn one clamd INSTREAM reply into a verdict.

    ``stream: OK`` is clean, ``stream: NAME FOUND`` is infected with NAME, and
    anything else, ``... ERROR`` replies included, raises :class:`ScannerError`:
    only an explicit OK may ever make a file clean.
    """
    line = text.rstrip("\0").strip()
    body = line.removeprefix("stream:").strip() if line.startswith("stream:") else line
    if line.endswith("ERROR"):
        detail = body.removesuffix("ERROR").strip().rstrip(".") or "unspecified error"
        raise ScannerError(f"clamd could not scan the file: {detail}")
    if line.startswith("stream:"):
        if body == "OK":
            return ScanResult(clean=True)
        if body.endswith(" FOUND"):
            signature = body.removesuffix(" FOUND").strip()
            if signature:
                return ScanResult(clean=False, signature=signature)
    raise ScannerError(f"unexpected reply from clamd: {line[:200]!r}")


@dataclass(frozen=True)
class TcpAddress:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return self.path


def parse_address(address: str) -> TcpAddress | UnixAddress:
    """Parse ``GATEWAY_CLAMD``: ``tcp://HOST:PORT`` or an absolute socket path.

    Raises :class:`ConfigError` naming the variable, so a typo stops start-up
    instead of failing the first scan.
    """
    if address.startswith("/"):
        if "\0" in address:
            raise ConfigError("GATEWAY_CLAMD: the socket path contains a NUL byte")
        return UnixAddress(address)
    if address.startswith("tcp://"):
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"GATEWAY_CLAMD: {address!r} has a bad port ({exc})") from None
        if not parts.hostname or port is None or port == 0:
            raise ConfigError(f"GATEWAY_CLAMD: {address!r} must be tcp://HOST:PORT")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ConfigError(f"GATEWAY_CLAMD: {address!r} must be just tcp://HOST:PORT")
        return TcpAddress(parts.hostname, port)
    raise ConfigError(
        f"GATEWAY_CLAMD: {address!r} is neither tcp://HOST:PORT nor an absolute socket path"
    )


def frame(chunk: bytes | memoryview, limit: int) -> list[tuple[bytes, memoryview]]:
    """Split one chunk into INSTREAM frames ``(length prefix, payload)`` of at most ``limit``.

    An empty chunk gives no frames: a zero length would end the stream early.
    """
    view = memoryview(chunk).cast("B")
    return [
        (struct.pack(">I", len(piece)), piece)
        for piece in (view[start : start + limit] for start in range(0, len(view), limit))
    ]


# -- clamd over asyncio streams --------------------------------------------


class ClamdScanner:
    """A :class:`Scanner` that talks to clamd over TCP or a unix socket.

    One connection per call: clamd handles each in its own thread and a
    connection left idle is closed by clamd's ``IdleTimeout`` anyway.

    ``timeout`` bounds connecting and each write (a clamd that stops reading
    is as good as gone); ``reply_timeout`` bounds the wait for the verdict
    once the whole file was sent, which is when clamd does most of its work.
    """

    def __init__(
        self,
        address: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 10.0,
        reply_timeout: float = 300.0,
    ) -> None:
        if not 0 < chunk_size <= _MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 and {_MAX_CHUNK_SIZE}")
        self.address = parse_address(address)
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.reply_timeout = reply_timeout

    def __repr__(self) -> str:
        return f"ClamdScanner({str(self.address)!r})"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(self.address, UnixAddress):
                    return await asyncio.open_unix_connection(self.address.path)
                return await asyncio.open_connection(self.address.host, self.address.port)
        except TimeoutError:
            raise ScannerUnavailable(
                f"clamd at {self.address} did not accept a connection within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} is unreachable: {exc}") from exc

    async def _read_reply(self, reader: asyncio.StreamReader) -> str:
        """Read one NUL-terminated reply; a connection closed early gives what was sent."""
        try:
            raw = await reader.readuntil(b"\0")
        except asyncio.IncompleteReadError as exc:
            raw = exc.partial
        except asyncio.LimitOverrunError:
            raise ScannerError("clamd sent an over-long reply") from None
        if not raw:
            raise ScannerUnavailable(
                f"clamd at {self.address} closed the connection without a reply"
            )
        return raw.decode("utf-8", "replace")

    async def ping(self) -> None:
        reader, writer = await self._connect()
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(b"zPING\0")
                await writer.drain()
                reply = await self._read_reply(reader)
        except TimeoutError:
            raise ScannerUnavailable(
                f"clamd at {self.address} did not answer PING within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.address} failed during PING: {exc}") from exc
        finally:
            await _close(writer)
        if reply.rstrip("\0").strip() != "PONG":
            raise ScannerUnavailable(
                f"clamd at {self.address} answered PING with {reply.rstrip(chr(0))[:100]!r}"
            )

    async def scan(self, chunks: AsyncIterator[bytes]) -> ScanResult:
        reader, writer = await self._connect()
        # The reply is read concurrently with sending: clamd answers early and
        # closes the connection when the stream passes its StreamMaxLength, and
        # that answer must be seen rather than a broken pipe on the next write.
        reply_task = asyncio.ensure_future(self._read_reply(reader))
        try:
            try:
                await self._send(writer, chunks, reply_task)
            except (OSError, TimeoutError) as exc:
                # Sending failed; if clamd said why before hanging up, that wins.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await asyncio.wait({reply_task})
                if not reply_task.done():
                    what = "stopped reading" if isinstance(exc, TimeoutError) else str(exc)
                    raise ScannerUnavailable(
                        f"clamd at {self.address} failed while receiving the file: {what}"
                    ) from None
            try:
                async with asyncio.timeout(self.reply_timeout):
                    reply = await reply_task
            except TimeoutError:
                raise ScannerUnavailable(
                    f"clamd at {self.address} gave no verdict within {self.reply_timeout:g}s"
                ) from None
            except OSError as exc:
                raise ScannerUnavailable(
                    f"clamd at {self.address} failed before giving a verdict: {exc}"
                ) from exc
            return parse_reply(reply)
        finally:
            if not reply_task.done():
                reply_task.cancel()
            with contextlib.suppress(BaseException):
                await reply_task
            await _close(writer)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        chunks: AsyncIterator[bytes],
        reply_task: asyncio.Future[str],
    ) -> None:
        writer.write(b"zINSTREAM\0")
        async for chunk in chunks:
            if reply_task.done():
                return  # clamd already answered (an error); stop sending
            for prefix, payload in frame(chunk, self.chunk_size):
                writer.write(prefix)
                writer.write(payload)
                async with asyncio.timeout(self.timeout):
                    await writer.drain()
        if not reply_task.done():
            writer.write(_END_OF_STREAM)
            async with asyncio.timeout(self.timeout):
                await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


async def _first(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The first ``limit`` bytes of ``chunks``."""
    left = limit
    try:
        async for chunk in chunks:
            if left <= 0:
                break
            piece = chunk if len(chunk) <= left else chunk[:left]
            left -= len(piece)
            yield piece
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def scan_file(
    scanner: Scanner, chunks: AsyncIterator[bytes], size: int, max_scan: int
) -> Verdict:
    """Scan a ``size``-byte file, at most its first ``max_scan`` bytes, into a :class:`Verdict`.

    :class:`ScannerUnavailable` passes through: nothing was learned.
    """
    try:
        result: ScanResult | ScannerError = await scanner.scan(_first(chunks, max_scan))
    except ScannerError as exc:
        result = exc
    return classify(result, size, max_scan)


def open_scanner(address: str | None) -> Scanner | None:
    """The scanner for ``GATEWAY_CLAMD``, or ``None`` when scanning is off.

    Raises :class:`ConfigError` for a malformed address; it does not connect.
    """
    if not address:
        return None
    return ClamdScanner(address)
