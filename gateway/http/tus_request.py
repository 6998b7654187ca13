"""Reading a tus request: its headers, checked, as the values the handlers need.

Each failure is a catalogue error with a message naming the header; the pure
parsing of header values lives in :mod:`gateway.http.tus_headers`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.requests import Request

from gateway.errors import Code, GatewayError
from gateway.filenames import clean_filename, guess_content_type
from gateway.http import tus_headers
from gateway.http.tus_headers import TUS_VERSION, UnknownAlgorithm

OFFSET_TYPE = "application/offset+octet-stream"
# Metadata keys that name the file or its type: they must be text.
_TEXT_KEYS = ("filename", "name", "filetype", "type", "content-type")

Checksum = tuple[Callable[[], object] | None, Callable[[object], None] | None]


def bad(message: str) -> GatewayError:
    return GatewayError(Code.BAD_REQUEST, message)


def method(request: Request) -> str:
    """The method, or the one X-HTTP-Method-Override names on a POST."""
    override = request.headers.get("x-http-method-override")
    if request.method == "POST" and override:
        return override.strip().upper()
    return request.method


def check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise GatewayError(
            Code.TUS_VERSION,
            f"This server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'.",
            headers={"Tus-Version": TUS_VERSION},
        )


def header_number(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return tus_headers.parse_number(value, name)
    except ValueError as exc:
        raise bad(str(exc)) from None


def offset_body(request: Request) -> bool:
    """Whether the body is declared as upload bytes (``application/offset+octet-stream``)."""
    content_type = request.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_TYPE


def checksum(request: Request) -> Checksum:
    """(new hash, verify) for the request's Upload-Checksum; (None, None) without one."""
    value = request.headers.get("upload-checksum")
    if value is None:
        return None, None
    try:
        algorithm, expected = tus_headers.parse_checksum(value)
    except UnknownAlgorithm as exc:
        raise GatewayError(Code.CHECKSUM_ALGORITHM, str(exc)) from None
    except ValueError as exc:
        raise bad(str(exc)) from None

    def verify(state: object) -> None:
        digest: bytes = state.digest()  # type: ignore[attr-defined]
        if not hmac.compare_digest(digest, expected):
            raise GatewayError(Code.CHECKSUM_MISMATCH)

    return (lambda: tus_headers.new_hash(algorithm)), verify


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    return "transfer-encoding" in request.headers


def expect(request: Request) -> int | None:
    """The declared Content-Length, if any."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return tus_headers.parse_number(value.strip(), "Content-Length")
    except ValueError as exc:
        raise bad(str(exc)) from None


def metadata(request: Request) -> tuple[str, str, dict[str, str]]:
    """(filename, content type, decoded metadata) from Upload-Metadata."""
    raw = request.headers.get("upload-metadata")
    parsed: dict[str, bytes] = {}
    if raw is not None:
        try:
            parsed = tus_headers.parse_metadata(raw)
        except ValueError as exc:
            raise bad(str(exc)) from None
    decoded: dict[str, str] = {}
    for key, value in parsed.items():
        try:
            decoded[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            if key in _TEXT_KEYS:
                raise bad(f"Upload-Metadata {key!r} must be UTF-8 text") from None
            continue  # other binary values are not kept
    name = decoded.get("filename") or decoded.get("name") or ""
    if len(name.encode()) > 1024:
        raise GatewayError(Code.BAD_FILENAME, "The file name is too long.")
    filename = clean_filename(name)
    declared = decoded.get("filetype") or decoded.get("type") or decoded.get("content-type")
    return filename, guess_content_type(filename, declared), decoded


def concat_sources(value: str) -> list[str] | None:
    """An Upload-Concat value: None for ``partial``, the upload URLs for ``final;...``."""
    try:
        return tus_headers.parse_concat(value.strip())
    except ValueError as exc:
        raise bad(str(exc)) from None


def length(request: Request) -> int | None:
    """Upload-Length, or None for Upload-Defer-Length: exactly one of them must be sent."""
    declared = header_number(request, "upload-length")
    defer = request.headers.get("upload-defer-length")
    if defer is not None:
        try:
            tus_headers.parse_defer_length(defer)
        except ValueError as exc:
            raise bad(str(exc)) from None
    if (declared is None) == (defer is None):
        raise bad("Send exactly one of Upload-Length and Upload-Defer-Length.")
    return declared
