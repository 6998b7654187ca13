"""Memory and leaks of a real gateway process on SeaweedFS.

With a small part-buffer budget (64 MiB, so the budget is what binds), many
concurrent large uploads must all succeed while the peak resident memory
(VmHWM) stays under the budget plus a fixed base; and hundreds of small
uploads must leave memory, file descriptors and threads where they were.
The numbers are printed (``pytest -s``) for the performance notes; nothing
here asserts on time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.ops.support import MiB, idle, value, wait_until
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer

BUDGET = 64 * MiB
BASE_ALLOWANCE = 150 * MiB
CONCURRENT = 16
LARGE = 48 * MiB
SMALL = 1 * MiB
SMALL_UPLOADS = 200
SMALL_PARALLEL = 8


@pytest.fixture
def make_gateway(
    tmp_path: Path, seaweed: SeaweedServer, s3_bucket: str
) -> Iterator[Callable[[str], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def make(name: str) -> GatewayProcess:
        env = gateway_env(
            tmp_path / name,
            GATEWAY_STORAGE="s3",
            GATEWAY_S3_BUCKET=s3_bucket,
            GATEWAY_S3_PREFIX=f"{name}/",
            GATEWAY_BUFFER_MEMORY="64MiB",
            GATEWAY_LOG_LEVEL="warning",
            **seaweed.env(),
        )
        proc = start_gateway(tmp_path / name, env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.kill()


def _status(proc: GatewayProcess, field: str) -> int:
    assert proc.process is not None
    with open(f"/proc/{proc.process.pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc status")


def _fds(proc: GatewayProcess) -> int:
    assert proc.process is not None
    return len(os.listdir(f"/proc/{proc.process.pid}/fd"))


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def _streamed_put(url: str, size: int, seed: bytes) -> tuple[int, str, str]:
    """PUT ``size`` bytes made from one 1 MiB block, without holding the file in memory."""
    block = hashlib.shake_256(seed).digest(MiB)
    expected = hashlib.sha256()
    for _ in range(size // MiB):
        expected.update(block)

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield block

    response = httpx.put(
        url, content=body(), headers={"Content-Length": str(size)}, timeout=httpx.Timeout(300.0)
    )
    sha = response.json().get("sha256", "") if response.status_code == 201 else response.text
    return response.status_code, str(sha), expected.hexdigest()


def _wait_idle(proc: GatewayProcess) -> None:
    samples = wait_until(lambda: idle(proc), "the gateway to be idle", timeout=120)
    assert value(samples, "gateway_buffer_bytes_in_use") == 0


def test_concurrent_large_uploads_stay_within_the_budget(
    make_gateway: Callable[[str], GatewayProcess],
) -> None:
    proc = make_gateway("peak")
    base = proc.rss_bytes()
    # One link per upload: a link admits only a few uploads at once.
    urls = [f"{proc.link(f'95{i:02d}')}/large-{i}.bin" for i in range(CONCURRENT)]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(
            pool.map(lambda iu: _streamed_put(iu[1], LARGE, b"%d" % iu[0]), enumerate(urls))
        )
    peak = proc.peak_rss_bytes()
    _wait_idle(proc)
    after = proc.rss_bytes()
    print(
        f"\n{CONCURRENT} x {_mib(LARGE)} concurrent PUTs, budget {_mib(BUDGET)}: "
        f"RSS at start {_mib(base)}, peak (VmHWM) {_mib(peak)}, idle after {_mib(after)}, "
        f"ceiling {_mib(BUDGET + BASE_ALLOWANCE)}"
    )
    for status, sha, expected in results:
        assert status == 201, sha
        assert sha == expected
    assert peak < BUDGET + BASE_ALLOWANCE


def test_hundreds_of_small_uploads_leak_no_memory_fds_or_threads(
    make_gateway: Callable[[str], GatewayProcess],
) -> None:
    proc = make_gateway("leak")
    link = proc.link("9600")

    def run(first: int, count: int) -> None:
        def one(i: int) -> tuple[int, str, str]:
            return _streamed_put(f"{link}/small-{i}.bin", SMALL, b"s%d" % i)

        with ThreadPoolExecutor(SMALL_PARALLEL) as pool:
            for status, sha, expected in pool.map(one, range(first, first + count)):
                assert status == 201, sha
                assert sha == expected
        _wait_idle(proc)

    run(0, SMALL_PARALLEL)  # warm up: pools and caches reach their working size
    base = (proc.rss_bytes(), _fds(proc), _status(proc, "Threads"))
    run(SMALL_PARALLEL, 50 - SMALL_PARALLEL)
    at_50 = (proc.rss_bytes(), _fds(proc), _status(proc, "Threads"))
    run(50, SMALL_UPLOADS - 50)
    at_200 = (proc.rss_bytes(), _fds(proc), _status(proc, "Threads"))
    print(
        f"\n{SMALL_UPLOADS} x {_mib(SMALL)} PUTs, {SMALL_PARALLEL} at a time "
        f"(RSS, fds, threads when idle): after warm-up {_mib(base[0])}, {base[1]}, {base[2]}; "
        f"after 50 {_mib(at_50[0])}, {at_50[1]}, {at_50[2]}; "
        f"after 200 {_mib(at_200[0])}, {at_200[1]}, {at_200[2]}; "
        f"peak {_mib(proc.peak_rss_bytes())}"
    )
    assert at_200[0] <= base[0] + 40 * MiB
    # Thread pools grow lazily up to their fixed size, so allow a few more threads.
    assert at_200[1] <= at_50[1] + 4
    assert at_200[2] <= at_50[2] + 4
