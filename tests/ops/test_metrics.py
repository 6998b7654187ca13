"""``GET /metrics`` on a running gateway, scraped before and after real traffic.

tests/test_metrics.py checks the registry in-process; this checks what an
operator's Prometheus would see: the exposition parses, and the key series
move as uploads, deliveries and downloads happen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.support import MiB, idle, put, random_bytes, scrape, value, wait_until
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments
from tests.support.seaweed import SeaweedServer

BUDGET = 96 * MiB
SMALL = 300 * 1024
LARGE = 40 * MiB  # more than one 16 MiB part: a multipart upload
TICKET = "9001"


@pytest.fixture
def gateway(tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str) -> Iterator[GatewayProcess]:
    env = gateway_env(
        tmp_path / "gw",
        GATEWAY_STORAGE="s3",
        GATEWAY_S3_BUCKET=s3_bucket,
        GATEWAY_ATTACHMENT_MAX="1MiB",
        GATEWAY_BUFFER_MEMORY="96MiB",
        **seaweed.env(),
    )
    proc = start_gateway(tmp_path / "gw", env)
    yield proc
    proc.kill()


def test_key_series_move_with_uploads_deliveries_and_downloads(gateway: GatewayProcess) -> None:
    before = scrape(gateway)
    assert value(before, "gateway_buffer_bytes_limit") == BUDGET
    assert value(before, "gateway_buffer_bytes_in_use") == 0
    assert value(before, "gateway_uploads_started_total", protocol="put") == 0
    assert value(before, "process_resident_memory_bytes") > 0

    link = gateway.link(TICKET)
    small = put(link, "small.txt", random_bytes(SMALL))
    large = put(link, "large.bin", random_bytes(LARGE))
    assert small.status_code == 201 and small.json()["route"] == "attachment"
    assert large.status_code == 201 and large.json()["route"] == "storage"
    wait_until(
        lambda: value(scrape(gateway), "gateway_deliveries_total", result="delivered") >= 2,
        "both deliveries to be counted",
    )
    quiet = wait_until(lambda: idle(gateway), "the gateway to be idle")

    def delta(name: str, **labels: str) -> float:
        base = before.get((name, frozenset(labels.items())), 0.0)
        return value(quiet, name, **labels) - base

    report: dict[str, Any] = {
        "started put": delta("gateway_uploads_started_total", protocol="put"),
        "finished attachment": delta(
            "gateway_uploads_finished_total", protocol="put", route="attachment"
        ),
        "finished storage": delta(
            "gateway_uploads_finished_total", protocol="put", route="storage"
        ),
        "bytes": delta("gateway_bytes_received_total", protocol="put"),
        "delivered": delta("gateway_deliveries_total", result="delivered"),
        "upload_part calls": delta("gateway_storage_request_seconds_count", op="upload_part"),
    }
    print(f"\nmetric deltas after two PUTs: {report}")
    assert report["started put"] == 2
    assert report["finished attachment"] == 1
    assert report["finished storage"] == 1
    assert report["bytes"] == SMALL + LARGE
    assert report["delivered"] == 2
    assert report["upload_part calls"] >= 1
    assert value(quiet, "gateway_uploads_in_flight") == 0
    assert value(quiet, "gateway_buffer_bytes_limit") == BUDGET
    assert delta("gateway_uploads_started_total", protocol="tus") == 0

    # A download through the signed link in the ticket comment.
    comments = ticket_comments(gateway, TICKET, wait_for=1)
    urls = [m for c in comments for m in re.findall(r"Download: (\S+)", c["body"])]
    assert len(urls) == 1
    download = httpx.get(urls[0], timeout=60)
    assert download.status_code == 200 and len(download.content) == LARGE
    after = scrape(gateway)
    assert value(after, "gateway_downloads_total") - value(quiet, "gateway_downloads_total") == 1
    sent = value(after, "gateway_download_bytes_total") - value(
        quiet, "gateway_download_bytes_total"
    )
    assert sent == LARGE
