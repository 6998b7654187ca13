"""The clamd scanner: its pure parsers, and INSTREAM against a real clamd."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.scan import (
    CLEAN,
    NOT_SCANNED_TOO_LARGE,
    ClamdScanner,
    ScannerError,
    ScannerUnavailable,
    ScanResult,
    TcpAddress,
    UnixAddress,
    classify,
    describe,
    frame,
    open_scanner,
    parse_address,
    parse_reply,
    scan_file,
)
from tests.support.clamd import (
    EICAR,
    EICAR_SIGNATURE,
    ClamdServer,
    free_port,
    require_clamd,
    start_clamd,
)

T = TypeVar("T")
MiB = 1024 * 1024


def run(awaitable: Awaitable[T], bound: float = 60.0) -> T:
    """Run one coroutine; ``bound`` only stops a hung test, it is not a speed check."""

    async def bounded() -> T:
        return await asyncio.wait_for(awaitable, bound)

    return asyncio.run(bounded())


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# -- parse_reply -------------------------------------------------------------


def test_reply_ok_is_clean() -> None:
    assert parse_reply("stream: OK\0") == ScanResult(clean=True, signature=None)


def test_reply_found_names_the_signature() -> None:
    result = parse_reply("stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0")
    assert result == ScanResult(clean=False, signature="Eicar-Test-Signature.UNOFFICIAL")


def test_reply_size_limit_is_an_error() -> None:
    with pytest.raises(ScannerError, match="INSTREAM size limit exceeded"):
        parse_reply("INSTREAM size limit exceeded. ERROR\0")


@pytest.mark.parametrize(
    "reply",
    ["", "\0", "OK", "stream:", "stream: FOUND", "stream: ok", "PONG", "stream: Can't scan ERROR"],
)
def test_reply_anything_else_is_an_error(reply: str) -> None:
    with pytest.raises(ScannerError):
        parse_reply(reply)


signature_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1
)


@given(signature_names)
def test_reply_found_round_trips_any_signature_name(name: str) -> None:
    assert parse_reply(f"stream: {name} FOUND\0") == ScanResult(clean=False, signature=name)


@given(st.text())
def test_reply_only_an_explicit_ok_is_clean(text: str) -> None:
    try:
        result = parse_reply(text)
    except ScannerError:
        return
    line = text.rstrip("\0").strip()
    if result.clean:
        assert line.startswith("stream:") and line.removeprefix("stream:").strip() == "OK"
        assert result.signature is None
    else:
        assert result.signature and line.endswith(" FOUND")


@given(st.text(), st.sampled_from(["", "\0", "\n\0"]))
def test_reply_ending_in_error_always_raises(text: str, tail: str) -> None:
    with pytest.raises(ScannerError, match="clamd could not scan"):
        parse_reply(f"{text} ERROR{tail}")


# -- parse_address, frame, open_scanner ----------------------------------------


def test_address_forms() -> None:
    assert parse_address("tcp://127.0.0.1:3310") == TcpAddress("127.0.0.1", 3310)
    assert parse_address("tcp://clamd.internal:3310/") == TcpAddress("clamd.internal", 3310)
    assert parse_address("tcp://[::1]:3310") == TcpAddress("::1", 3310)
    assert parse_address("/run/clamav/clamd.ctl") == UnixAddress("/run/clamav/clamd.ctl")


@pytest.mark.parametrize(
    "bad",
    [
        "clamd:3310",
        "tcp://127.0.0.1",
        "tcp://:3310",
        "tcp://host:0",
        "tcp://host:99999",
        "tcp://host:port",
        "tcp://host:3310/path",
        "relative/clamd.sock",
        "",
    ],
)
def test_bad_addresses_name_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="^GATEWAY_CLAMD: "):
        parse_address(bad)


hostnames = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True
)


@given(hostnames, st.integers(1, 65535))
def test_tcp_address_round_trips(host: str, port: int) -> None:
    text = f"tcp://{host}:{port}"
    address = parse_address(text)
    assert address == TcpAddress(host, port)
    assert str(address) == text


@given(st.text().filter(lambda s: not s.startswith(("/", "tcp://"))))
def test_other_text_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="^GATEWAY_CLAMD: "):
        parse_address(text)


@given(st.binary(max_size=5000), st.integers(1, 700))
def test_frames_carry_the_chunk_in_order_within_the_limit(data: bytes, limit: int) -> None:
    frames = frame(data, limit)
    assert b"".join(bytes(payload) for _, payload in frames) == data
    for prefix, payload in frames:
        assert 0 < len(payload) <= limit
        assert int.from_bytes(prefix, "big") == len(payload)


def test_open_scanner() -> None:
    assert open_scanner(None) is None
    assert open_scanner("") is None
    scanner = open_scanner("tcp://127.0.0.1:3310")
    assert isinstance(scanner, ClamdScanner)
    with pytest.raises(ConfigError, match="GATEWAY_CLAMD"):
        open_scanner("localhost:3310")


# -- against a real clamd ----------------------------------------------------------


def test_clean_bytes_are_clean(clamd: ClamdServer) -> None:
    scanner = ClamdScanner(clamd.tcp_address)
    result = run(scanner.scan(stream([b"hello, support team\n", b"", b"the logs are attached"])))
    assert result == ScanResult(clean=True, signature=None)


def test_empty_file_is_clean(clamd: ClamdServer) -> None:
    assert run(ClamdScanner(clamd.tcp_address).scan(stream([]))).clean


def test_eicar_is_found_and_named(clamd: ClamdServer) -> None:
    result = run(ClamdScanner(clamd.tcp_address).scan(stream([EICAR])))
    assert result == ScanResult(clean=False, signature=EICAR_SIGNATURE)


def test_eicar_split_across_chunks_and_frames_is_found(clamd: ClamdServer) -> None:
    # Tiny frames and chunk borders inside the signature: clamd sees one stream.
    scanner = ClamdScanner(clamd.tcp_address, chunk_size=7)
    result = run(scanner.scan(stream([EICAR[:10], EICAR[10:50], EICAR[50:]])))
    assert result.signature == EICAR_SIGNATURE


def test_eicar_inside_a_zip_is_found(clamd: ClamdServer) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "nothing to see here\n" * 100)
        archive.writestr("tools/eicar.com", EICAR)
    data = buffer.getvalue()
    assert EICAR not in data  # only unpacking can find it
    result = run(ClamdScanner(clamd.tcp_address).scan(stream([data])))
    assert result == ScanResult(clean=False, signature=EICAR_SIGNATURE)


def test_50_mib_clean_stream_is_scanned_in_bounded_memory(clamd: ClamdServer) -> None:
    block = os.urandom(MiB)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50):
            sent += len(block)
            yield block

    tracemalloc.start()
    try:
        result = run(ClamdScanner(clamd.tcp_address).scan(chunks()), bound=300)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.clean
    assert sent == 50 * MiB
    # One 1 MiB chunk is held at a time; a buffered 50 MiB file would show here.
    assert peak < 8 * MiB, f"peak traced memory {peak} bytes"


def test_unix_socket_address(clamd: ClamdServer) -> None:
    assert Path(clamd.socket_path).is_socket()
    scanner = ClamdScanner(clamd.socket_path)
    assert run(scanner.scan(stream([b"clean"]))).clean
    assert run(scanner.scan(stream([EICAR]))).signature == EICAR_SIGNATURE
    run(scanner.ping())


def test_ping_answers(clamd: ClamdServer) -> None:
    run(ClamdScanner(clamd.tcp_address).ping())


def test_dead_tcp_address_is_unavailable() -> None:
    scanner = ClamdScanner(f"tcp://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        run(scanner.scan(stream([b"data"])), bound=10)
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        run(scanner.ping(), bound=10)


def test_missing_unix_socket_is_unavailable(tmp_path: Path) -> None:
    scanner = ClamdScanner(str(tmp_path / "no-clamd.sock"), timeout=2)
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        run(scanner.ping(), bound=10)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never reads or answers: a hung clamd."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_hung_clamd_is_unavailable_on_ping(silent_server: int) -> None:
    scanner = ClamdScanner(f"tcp://127.0.0.1:{silent_server}", timeout=0.5)
    with pytest.raises(ScannerUnavailable, match="did not answer PING"):
        run(scanner.ping(), bound=10)


def test_hung_clamd_is_unavailable_on_scan(silent_server: int) -> None:
    # Nobody reads: the socket buffers fill and a write times out.
    scanner = ClamdScanner(f"tcp://127.0.0.1:{silent_server}", timeout=0.5)
    block = bytes(MiB)
    with pytest.raises(ScannerUnavailable, match="stopped reading"):
        run(scanner.scan(stream([block] * 64)), bound=30)


@pytest.fixture(scope="module")
def small_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """A second clamd with small limits: 4 MiB streams, files scanned up to 1 MiB."""
    require_clamd()
    server = start_clamd(
        tmp_path_factory.mktemp("clamd-small"),
        stream_max_length="4M",
        extra={"MaxFileSize": "1M", "MaxScanSize": "1M", "AlertExceedsMax": "yes"},
    )
    try:
        yield server
    finally:
        server.stop()


def test_stream_over_clamd_limit_is_an_error_not_clean(small_clamd: ClamdServer) -> None:
    scanner = ClamdScanner(small_clamd.tcp_address, chunk_size=256 * 1024)
    block = bytes(256 * 1024)
    with pytest.raises(ScannerError, match="size limit exceeded"):
        run(scanner.scan(stream([block] * 40)))


def test_file_over_clamd_scan_limit_is_reported_not_clean(small_clamd: ClamdServer) -> None:
    # With AlertExceedsMax, a file clamd would only partly scan is not "OK".
    result = run(ClamdScanner(small_clamd.tcp_address).scan(stream([EICAR, bytes(2 * MiB)])))
    assert not result.clean
    assert result.signature == "Heuristics.Limits.Exceeded.MaxFileSize"
    assert result.limit_exceeded


def test_file_under_clamd_limits_still_scans(small_clamd: ClamdServer) -> None:
    result = run(ClamdScanner(small_clamd.tcp_address).scan(stream([EICAR])))
    assert result.signature == EICAR_SIGNATURE
    assert not result.limit_exceeded


# -- verdicts: a file past the scanner's limit is never clean ----------------------


LIMIT = 64 * MiB


@given(st.integers(min_value=0, max_value=LIMIT))
def test_ok_within_the_limit_is_clean(size: int) -> None:
    assert classify(ScanResult(clean=True), size, LIMIT).value == CLEAN


@given(st.integers(min_value=LIMIT + 1, max_value=2**46))
def test_ok_past_the_limit_is_not_scanned_and_names_the_limit(size: int) -> None:
    verdict = classify(ScanResult(clean=True), size, LIMIT)
    assert verdict.value == NOT_SCANNED_TOO_LARGE and not verdict.clean
    assert verdict.limit == LIMIT
    assert describe(verdict.value, verdict.limit) == (
        f"not scanned: larger than the scanner's limit ({LIMIT} bytes)"
    )


@pytest.mark.parametrize("size", [1, LIMIT, LIMIT + 1])
def test_a_signature_found_is_infected_whatever_the_size(size: int) -> None:
    verdict = classify(ScanResult(clean=False, signature="Eicar-Test-Signature"), size, LIMIT)
    assert verdict.infected and verdict.value == "infected:Eicar-Test-Signature"


@pytest.mark.parametrize("size", [1, LIMIT + 1])
def test_limit_heuristics_and_stream_limits_are_not_scanned(size: int) -> None:
    exceeded = ScanResult(clean=False, signature="Heuristics.Limits.Exceeded.MaxFileSize")
    assert classify(exceeded, size, LIMIT).too_large
    stream_limit = ScannerError("clamd could not scan the file: INSTREAM size limit exceeded")
    assert classify(stream_limit, size, LIMIT).too_large


def test_other_scanner_errors_count_as_infected() -> None:
    verdict = classify(ScannerError("clamd could not scan the file: Can't allocate"), 10, LIMIT)
    assert verdict.infected and "unscannable" in verdict.value


def test_scan_file_sends_at_most_the_limit(clamd: ClamdServer) -> None:
    """EICAR in the first bytes of an oversized file is still found; the rest is not sent."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for block in [EICAR, bytes(MiB), bytes(MiB), bytes(MiB)]:
            sent.append(len(block))
            yield block

    scanner = ClamdScanner(clamd.tcp_address)
    verdict = run(scan_file(scanner, chunks(), len(EICAR) + 3 * MiB, MiB))
    assert verdict.value == f"infected:{EICAR_SIGNATURE}"
    assert sum(sent) <= len(EICAR) + 2 * MiB  # stopped reading past the limit
    clean = run(scan_file(scanner, stream([bytes(3 * MiB)]), 3 * MiB, MiB))
    assert clean.value == NOT_SCANNED_TOO_LARGE and clean.limit == MiB
    whole = run(scan_file(scanner, stream([bytes(MiB)]), MiB, MiB))
    assert whole.value == CLEAN
