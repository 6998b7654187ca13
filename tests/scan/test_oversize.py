"""A file past the scanner's limit is never reported clean, whatever clamd says of it.

libclamav scans at most 2 GiB - 1 of a file; clamd.conf may set less. Without
``AlertExceedsMax`` clamd answers ``OK`` for a larger file even with malware in
its first bytes. These tests set clamd's limits low (16 MiB: the same code path
as the 2 GiB cap, quick to run), tell the gateway that limit with
``GATEWAY_CLAMD_MAX_SCAN``, and upload through a real gateway:

* EICAR in the first bytes of an oversized file: quarantined under either
  ``GATEWAY_SCAN_OVERSIZE`` policy, with or without ``AlertExceedsMax``;
* a clean oversized file: ``scan`` is ``not_scanned:too_large`` and the comment
  says so; ``deliver`` delivers it with that caution, ``quarantine`` holds it
  back with no link.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.links import Links
from tests.scan.test_quarantine import TIMEOUT, entries, put, wait_for_receipt
from tests.support.clamd import EICAR, EICAR_SIGNATURE, ClamdServer, require_clamd, start_clamd
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway, ticket_comments

MiB = 1024 * 1024
LIMIT = 16 * MiB
NOT_SCANNED = f"not scanned: larger than the scanner's limit ({LIMIT} bytes)"


@pytest.fixture(scope="module", params=["yes", "no"], ids=["alert", "no-alert"])
def limited_clamd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClamdServer]:
    """clamd scanning at most 16 MiB of a file, with and without AlertExceedsMax."""
    require_clamd()
    server = start_clamd(
        tmp_path_factory.mktemp(f"clamd-{request.param}"),
        stream_max_length="64M",
        extra={"MaxFileSize": "16M", "MaxScanSize": "16M", "AlertExceedsMax": request.param},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["deliver", "quarantine"])
def policy_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, limited_clamd: ClamdServer
) -> Iterator[GatewayProcess]:
    workdir = tmp_path / "gw"
    env = gateway_env(
        workdir,
        GATEWAY_CLAMD=limited_clamd.tcp_address,
        GATEWAY_CLAMD_MAX_SCAN="16MiB",
        GATEWAY_SCAN_OVERSIZE=request.param,
    )
    proc = start_gateway(workdir, env)
    yield proc
    proc.kill()


def test_oversized_files_are_never_clean(policy_gateway: GatewayProcess) -> None:
    policy = policy_gateway.env["GATEWAY_SCAN_OVERSIZE"]
    infected = EICAR + os.urandom(LIMIT + 4 * MiB)
    clean = os.urandom(LIMIT + 4 * MiB)
    link = policy_gateway.link("7100")
    put(link, {"infected.bin": infected, "big.bin": clean})

    bad = wait_for_receipt(link, "infected.bin", settled=True)
    assert bad["status"] == "quarantined", bad
    assert bad["scan"] == f"infected:{EICAR_SIGNATURE}", bad

    big = wait_for_receipt(link, "big.bin", settled=True)
    assert big["scan"] == "not_scanned:too_large", big
    assert big["scan_detail"] == NOT_SCANNED
    download, _ = Links(policy_gateway.settings).download_url(big["file_id"], "big.bin")
    if policy == "deliver":
        assert big["status"] == "delivered", big
    else:
        assert big["status"] == "quarantined", big
        assert NOT_SCANNED in big["status_detail"]
        assert httpx.get(download, timeout=TIMEOUT).status_code == 403

    ticket_comments(policy_gateway, "7100", wait_for=1)
    blocks, attached = entries(policy_gateway, "7100")
    assert f"QUARANTINED: malware detected ({EICAR_SIGNATURE})" in blocks["infected.bin"]
    assert "/files/" not in blocks["infected.bin"]
    assert NOT_SCANNED in blocks["big.bin"]
    if policy == "deliver":  # 20 MiB: at the attachment cap, so attached
        assert "Attached to this comment." in blocks["big.bin"], blocks["big.bin"]
        assert f"Caution: {NOT_SCANNED}." in blocks["big.bin"]
        assert attached == ["big.bin"]
    else:
        assert f"QUARANTINED: {NOT_SCANNED}" in blocks["big.bin"]
        assert "/files/" not in blocks["big.bin"]
        assert attached == []
    # The audit log says it too.
    log = policy_gateway.log_path.read_text(errors="replace")
    assert "not_scanned:too_large" in log and NOT_SCANNED in log
