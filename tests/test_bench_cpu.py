"""bench/cpu.py: CPU seconds per process from /proc and from reaped children."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cpu import CLIENT, CpuUse, GiB, bound_ratio, children_cpu, measure, process_cpu

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_process_cpu_counts_this_process_and_is_none_for_a_gone_one() -> None:
    before = process_cpu(os.getpid())
    assert before is not None
    total = 0
    for i in range(2_000_000):
        total += i
    after = process_cpu(os.getpid())
    assert after is not None and after > before
    # Above the kernel's largest pid (2**22): no such process.
    assert process_cpu(2**22 + 12345) is None


def test_a_reaped_child_counts_as_the_client() -> None:
    before = children_cpu()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert children_cpu() - before >= 0.25


def test_measure_splits_a_running_server_from_the_exiting_client() -> None:
    server = subprocess.Popen([sys.executable, "-c", BURN + "time.sleep(30)\n"])
    try:
        with measure({"server": server.pid}) as use:
            subprocess.run([sys.executable, "-c", BURN], check=True)
            deadline = time.monotonic() + 60
            while (process_cpu(server.pid) or 0.0) < 0.25:  # the server's burn ends on its own
                assert server.poll() is None, "the server exited before its burn was seen"
                assert time.monotonic() < deadline, "the server's burn was never seen"
                time.sleep(0.01)
    finally:
        server.kill()
        server.wait()
    assert set(use.seconds) == {"server", CLIENT}
    assert use.seconds[CLIENT] >= 0.25
    assert use.seconds["server"] > 0.0
    assert use.wall > 0.0
    assert 0.0 < use.busy


def test_a_server_gone_during_the_run_is_left_out() -> None:
    server = subprocess.Popen([sys.executable, "-c", "pass"])
    with measure({"server": server.pid}, client=False) as use:
        server.wait()
    assert use.seconds == {}


def test_text_is_per_gib_with_sum_and_busy_share() -> None:
    use = CpuUse({"S3": 5.1, "gateway": 0.95, "client": 0.2}, wall=4.0, cores=2)
    assert use.per_gib(GiB // 2) == pytest.approx({"S3": 10.2, "gateway": 1.9, "client": 0.4})
    assert use.text(GiB // 2) == "S3 10.2 · gateway 1.9 · client 0.4 = 12.5; 78% of 2 cores"
    assert CpuUse().text(GiB) == "-"


def test_bound_ratio_is_base_cpu_over_other_cpu() -> None:
    base = CpuUse({"S3": 10.2, "client": 0.9})
    gateway = CpuUse({"S3": 10.2, "gateway": 1.9, "client": 0.36})
    assert bound_ratio(base, gateway) == pytest.approx(11.1 / 12.46)
    assert bound_ratio(None, gateway) is None
    assert bound_ratio(base, CpuUse()) is None
