"""Gateways on SeaweedFS behind the fault proxy, and the fault matrix's ledger.

Every test here runs a real gateway process whose ``AWS_ENDPOINT_URL_S3`` is
a :class:`~tests.support.faultproxy.FaultProxy` in front of the session's
SeaweedFS. The ledger counts, over the whole run, the faults the proxies
injected, the files the gateway acknowledged and then read back intact
straight from the bucket, and the files lost (acknowledged but not stored
byte for byte: must stay zero). The totals are printed at the end of the
run and written to ``test-artifacts/fault-matrix.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "test-artifacts" / "fault-matrix.json"


@dataclass
class Ledger:
    faults: Counter[str] = field(default_factory=Counter)
    tests: int = 0
    files_uploaded: int = 0
    files_lost: int = 0
    lost: list[str] = field(default_factory=list)

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return (
            f"fault matrix: {sum(self.faults.values())} faults injected ({kinds}) in "
            f"{self.tests} tests; {self.files_uploaded} files uploaded and verified; "
            f"{self.files_lost} files lost"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "faults_injected": sum(self.faults.values()),
            "faults_by_kind": dict(self.faults),
            "tests": self.tests,
            "files_uploaded": self.files_uploaded,
            "files_lost": self.files_lost,
            "lost": self.lost,
        }


LEDGER = Ledger()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not LEDGER.tests:
        return
    terminalreporter.write_sep("-", "fault matrix")
    terminalreporter.write_line(LEDGER.line())
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(LEDGER.as_json(), indent=2) + "\n")


@pytest.fixture
def proxy(seaweed: SeaweedServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's SeaweedFS, its faults counted in the ledger."""
    with FaultProxy(seaweed.endpoint_url) as px:
        yield px
        LEDGER.faults.update(px.injected)
        LEDGER.tests += 1


@pytest.fixture
def direct(seaweed: SeaweedServer) -> Iterator[S3Client]:
    """A boto3 client straight to SeaweedFS (no proxy), to see what is really stored."""
    client = seaweed.client()
    yield client
    client.close()


@pytest.fixture
def gw(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str, proxy: FaultProxy
) -> Iterator[GatewayProcess]:
    """A gateway on a fresh bucket whose every S3 request goes through ``proxy``."""
    env = gateway_env(
        tmp_path / "gw",
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=s3_bucket,
        **{**seaweed.env(), "AWS_ENDPOINT_URL_S3": proxy.url},
    )
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


def verify_stored(client: S3Client, bucket: str, receipt: dict[str, Any], data: bytes) -> None:
    """An acknowledged file must be in the bucket byte for byte; count it (or its loss)."""
    key = f"files/{receipt['file_id']}/data"
    try:
        stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # any failure to read it back means the file is lost
        stored = b""
        reason = f"{type(exc).__name__}: {exc}"
    else:
        reason = "bytes differ"
    digest = hashlib.sha256(data).hexdigest()
    if stored == data and receipt["sha256"] == digest and receipt["size"] == len(data):
        LEDGER.files_uploaded += 1
        return
    LEDGER.files_lost += 1
    LEDGER.lost.append(f"{receipt['file_id']}: {reason}")
    raise AssertionError(f"acknowledged file {receipt['file_id']} is not stored intact: {reason}")
