"""Files whose parts are larger than a buffer, through a real gateway process.

``GATEWAY_S3_MAX_PARTS`` makes parts big without terabytes: on SeaweedFS a
2 GiB file in 16 parts has 128 MiB parts, more than the 32 MiB buffers of a
64 MiB budget, so each part is a segment of four sub-parts copied into place
(UploadPartCopy). The first PATCH is cut in the middle of a segment; tus HEAD
says exactly what arrived, the upload resumes from there and the receipt's
SHA-256 is the file's. Peak memory stays within the budget. The same path
runs small and fast on the file store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.rawhttp import connect, metric, request_head, wait_for
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.tus.support import OCTETS, create, head, receipt

MiB = 1024 * 1024
GiB = 1024 * MiB
BASE_ALLOWANCE = 150 * MiB
SEED = hashlib.shake_256(b"segments").digest(MiB)


def content(start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` of the test file: 1 MiB blocks, each with its number."""
    position = start
    while position < end:
        index, skip = divmod(position, MiB)
        block = index.to_bytes(8, "big") + SEED[8:]
        piece = block[skip : skip + min(MiB - skip, end - position)]
        yield piece
        position += len(piece)


@dataclass(frozen=True)
class Case:
    store: str
    size: int
    budget: str
    max_parts: int
    cut: int  # where the first PATCH's connection is cut: inside a segment, mid sub-part


CASES = [
    pytest.param(
        Case("s3", 2 * GiB, "64MiB", 16, 128 * MiB + 32 * MiB + 5 * MiB + 7),
        marks=pytest.mark.slow,
        id="s3-2GiB",
    ),
    pytest.param(Case("file", 64 * MiB, "16MiB", 4, 16 * MiB + 8 * MiB + 3 * MiB + 7), id="file"),
]


@pytest.fixture
def make_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def make(case: Case) -> GatewayProcess:
        extra = {"GATEWAY_BUFFER_MEMORY": case.budget, "GATEWAY_S3_MAX_PARTS": str(case.max_parts)}
        if case.store == "s3":
            seaweed = request.getfixturevalue("seaweed")
            bucket = request.getfixturevalue("s3_bucket")
            extra.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=bucket, **seaweed.env())
        proc = start_gateway(tmp_path / "gw", gateway_env(tmp_path / "gw", **extra))
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


def _offset(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


@pytest.mark.parametrize("case", CASES)
def test_parts_larger_than_a_buffer_resume_mid_segment_and_stay_within_the_budget(
    make_gateway: Any, case: Case
) -> None:
    proc: GatewayProcess = make_gateway(case)
    budget = int(case.budget.removesuffix("MiB")) * MiB
    ready = httpx.get(f"{proc.url}/readyz", timeout=30).json()
    assert ready["max_upload"] >= case.size
    link = proc.link("2147483648")
    created = create(f"{link}/tus/", case.size, "segments.bin")
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    sha = hashlib.sha256()

    # The first PATCH declares the whole file and is cut inside a segment.
    headers = [(k, v) for k, v in OCTETS.items()]
    headers += [("Upload-Offset", "0"), ("Content-Length", str(case.size))]
    with connect(url, timeout=120) as sock:
        sock.sendall(request_head("PATCH", url, headers))
        for piece in content(0, case.cut):
            sha.update(piece)
            sock.sendall(piece)
    assert wait_for(lambda: _offset(url) == case.cut, timeout=120), _offset(url)

    # Any replica's HEAD says exactly what is stored: resume from there.
    offset = _offset(url)

    def rest() -> Iterator[bytes]:
        for piece in content(offset, case.size):
            sha.update(piece)
            yield piece

    resumed = httpx.patch(
        url,
        content=rest(),
        headers={**OCTETS, "Upload-Offset": str(offset), "Content-Length": str(case.size - offset)},
        timeout=httpx.Timeout(900.0),
    )
    assert resumed.status_code == 204, resumed.text
    assert resumed.headers["Upload-Offset"] == str(case.size)
    file_id = url.rstrip("/").rsplit("/", 1)[-1]
    got = receipt(link, file_id)
    assert got["size"] == case.size
    assert got["sha256"] == sha.hexdigest()
    peak = proc.peak_rss_bytes()
    print(
        f"\n{case.size // MiB} MiB in segments, budget {case.budget}: peak RSS {peak / MiB:.1f} MiB"
    )
    assert peak < budget + BASE_ALLOWANCE, f"peak RSS {peak / MiB:.1f} MiB"
    assert _offset(url) == case.size
    # Every part went through a segment: each was copied into place once.
    copies = metric(proc.url, "gateway_storage_request_seconds_count", op="copy_part")
    assert copies == case.max_parts
