"""One size limit: what the gateway says it takes is what it takes, on both stores.

With nothing configured, ``Tus-Max-Size``, the page's stated limit, ``/readyz``
and the largest ``Upload-Length``/``Content-Length`` accepted are one number,
and a byte more is 413 with that number in the message.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx

from gateway.links import Links
from gateway.units import format_size
from gateway.uploads.limit import size_limit
from tests.http.rawhttp import exchange, send_and_close, wait_for
from tests.support.gateway import GatewayProcess, staff_headers
from tests.tus.support import TUS, create

MiB = 1024 * 1024


def _largest(proc: GatewayProcess) -> int:
    ready = httpx.get(f"{proc.url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    largest: int = ready.json()["max_upload"]
    return largest


def _says(message: str, n: int) -> bool:
    """The 413 names the limit in bytes and in human units."""
    return f"{n:,} bytes ({format_size(n)})" in message


def test_every_surface_says_the_number_it_takes(gateway_any: GatewayProcess) -> None:
    proc = gateway_any
    largest = _largest(proc)
    settings = proc.settings
    assert (
        largest
        == size_limit(max_upload=settings.max_upload, buffer_memory=settings.buffer_memory).largest
    )
    # With the defaults GATEWAY_MAX_UPLOAD decides (the buffer budget no longer does).
    assert largest == settings.max_upload == 5 * 1024**4
    link = proc.link("7001")
    endpoint = f"{link}/tus/"

    options = httpx.options(endpoint, headers=TUS)
    assert options.status_code == 204
    assert options.headers["Tus-Max-Size"] == str(largest)

    page = httpx.get(link, timeout=30)
    assert page.status_code == 200
    assert f'data-max-size="{largest}"' in page.text
    stated = re.search(r'<dt>Largest file</dt><dd title="([\d,]+) bytes">([^<]+)</dd>', page.text)
    assert stated is not None
    assert int(stated.group(1).replace(",", "")) == largest
    assert stated.group(2) == format_size(largest).replace(".0 ", " ")

    # tus: the largest Upload-Length is taken, one byte more is refused naming the limit.
    taken = create(endpoint, largest, "largest.bin")
    assert taken.status_code == 201, taken.text
    assert httpx.head(taken.headers["Location"], headers=TUS).headers["Upload-Length"] == str(
        largest
    )
    assert httpx.delete(taken.headers["Location"], headers=TUS).status_code == 204
    two_tib = create(endpoint, 2 * 1024**4, "two.bin")  # parts past a buffer: segments
    assert two_tib.status_code == 201, two_tib.text
    assert httpx.delete(two_tib.headers["Location"], headers=TUS).status_code == 204
    refused = create(endpoint, largest + 1, "past.bin")
    assert refused.status_code == 413
    assert _says(refused.json()["error"]["message"], largest), refused.text

    # PUT: a Content-Length of the limit starts an upload (the client hangs up early and
    # HEAD shows it waiting for the rest); one byte more is 413 before any byte is read.
    send_and_close(f"{link}/largest.bin", "PUT", [("Content-Length", str(largest))], b"x" * 65536)
    assert wait_for(
        lambda: httpx.head(f"{link}/largest.bin").headers.get("Upload-Length") == str(largest)
    )
    past = exchange(f"{link}/past.bin", "PUT", [("Content-Length", str(largest + 1))])
    assert past is not None and past.status == 413
    assert past.json()["error"]["code"] == "too_large"
    assert _says(past.json()["error"]["message"], largest)

    # PUT with Content-Range: the total is the file's length, held to the same number.
    ranged = httpx.put(
        f"{link}/ranged.bin",
        content=b"y" * MiB,
        headers={"Content-Range": f"bytes 0-{MiB - 1}/{largest}"},
        timeout=60,
    )
    assert ranged.status_code == 200, ranged.text
    assert ranged.json()["upload_length"] == largest
    over = httpx.put(
        f"{link}/over.bin",
        content=b"y",
        headers={"Content-Range": f"bytes 0-0/{largest + 1}"},
        timeout=60,
    )
    assert over.status_code == 413
    assert _says(over.json()["error"]["message"], largest)


def test_a_link_minted_with_a_larger_cap_is_held_to_the_gateway(
    gateway_file: GatewayProcess,
) -> None:
    largest = _largest(gateway_file)
    # Minted where the limit was higher (another replica's settings, the same secret).
    roomy = gateway_file.settings.with_(max_upload=40 * 1024**4)
    link = Links(roomy).mint("7002").url
    assert httpx.options(f"{link}/tus/", headers=TUS).headers["Tus-Max-Size"] == str(largest)
    assert f'data-max-size="{largest}"' in httpx.get(link, timeout=30).text
    refused = create(f"{link}/tus/", largest + 1)
    assert refused.status_code == 413
    assert _says(refused.json()["error"]["message"], largest)
    # A link's own smaller cap is what it says and what it refuses past.
    small = gateway_file.link("7002", max_size=3 * MiB)
    assert httpx.options(f"{small}/tus/", headers=TUS).headers["Tus-Max-Size"] == str(3 * MiB)
    capped = create(f"{small}/tus/", 3 * MiB + 1)
    assert capped.status_code == 413
    assert (
        "this link accepts at most 3,145,728 bytes (3.0 MiB)" in capped.json()["error"]["message"]
    )


def test_links_above_the_limit_are_refused(gateway_file: GatewayProcess) -> None:
    largest = _largest(gateway_file)
    api = f"{gateway_file.url}/api/links"
    headers = staff_headers(gateway_file)
    refused = httpx.post(api, json={"ticket": "7003", "max_size": largest + 1}, headers=headers)
    assert refused.status_code == 400
    assert _says(refused.json()["error"]["message"], largest), refused.text
    named = httpx.post(api, json={"ticket": "7003", "max_size": "6TiB"}, headers=headers)
    assert named.status_code == 400 and _says(named.json()["error"]["message"], largest)
    default = httpx.post(api, json={"ticket": "7003"}, headers=headers)
    assert default.status_code == 201 and default.json()["max_size"] == largest
    exact = httpx.post(api, json={"ticket": "7003", "max_size": largest}, headers=headers)
    assert exact.status_code == 201 and exact.json()["max_size"] == largest

    cli = [sys.executable, "-m", "gateway", "link", "--ticket", "7003"]
    run = {"env": gateway_file.env, "cwd": gateway_file.workdir, "capture_output": True,
           "text": True, "timeout": 60}  # fmt: skip
    too_big = subprocess.run([*cli, "--max-size", "6TiB"], **run)  # type: ignore[call-overload]
    assert too_big.returncode == 2
    assert _says(too_big.stderr, largest), too_big.stderr
    plain = subprocess.run(cli, **run)  # type: ignore[call-overload]
    assert plain.returncode == 0, plain.stderr
    assert f"Max size: {format_size(largest)}" in plain.stdout


def test_start_up_says_the_limit_once_and_why(gateway_file: GatewayProcess) -> None:
    largest = _largest(gateway_file)
    lines = [
        json.loads(line)
        for line in gateway_file.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    said = [line for line in lines if "largest file accepted" in json.dumps(line)]
    assert len(said) == 1, said
    text = json.dumps(said[0])
    assert f"{largest:,} bytes" in text
    assert "set by GATEWAY_MAX_UPLOAD=5.0 TiB" in text
    assert "is more" not in text  # nothing to warn about with the defaults
    assert not any("refused with 413" in json.dumps(line) for line in lines)


def test_bodies_of_unknown_length_are_refused_naming_the_limit(
    gateway_file: GatewayProcess,
) -> None:
    link = gateway_file.link("7004", max_size=MiB)
    limit = f"at most {MiB:,} bytes (1.0 MiB)"

    def chunked() -> Iterator[bytes]:
        yield b"z" * MiB
        yield b"z"

    put = httpx.put(f"{link}/chunked.bin", content=chunked(), timeout=60)
    assert put.status_code == 413
    assert limit in put.json()["error"]["message"], put.text
    form = httpx.post(link, files={"file": ("form.bin", b"f" * (MiB + 1))}, timeout=60)
    assert form.status_code == 413
    assert limit in form.json()["error"]["message"], form.text
    deferred = create(f"{link}/tus/", None, "deferred.bin")
    assert deferred.status_code == 201
    past = httpx.patch(
        deferred.headers["Location"],
        content=b"d" * (MiB + 1),
        headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        timeout=60,
    )
    assert past.status_code == 413
    assert limit in past.json()["error"]["message"], past.text
