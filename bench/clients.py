"""The ``clients`` scenario: what partners run, side by side against ``curl -T``.

One file, one gateway per store, these clients in turn:

* ``curl -T`` through the gateway: the baseline every other row is a ratio of;
* ``gateway upload`` with its defaults (our CLI);
* the upload page in headless Chromium (``bench.page_client``), with the
  longest main-thread task and the peak JavaScript heap it saw;
* tus-js-client with its defaults (one PATCH for the whole file);
* boto3 ``upload_file`` straight to the bucket (SeaweedFS only), for scale.

Then the same through ``bench.netproxy`` at 25 ms each way and 200 Mbit/s per
connection, where each row's ratio is its speed over what the proxy allows the
connections it used (one for curl, the streams for the page and the CLI).
Targets: the page and the CLI at 0.9 x ``curl -T`` on loopback, and 0.9 x the
proxy's allowance through it; the page's longest main-thread task under 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cpu import measure
from bench.data import TestFile
from bench.harness import Harness
from bench.netproxy import ProxyThread
from bench.procs import free_port
from bench.results import MiB, Row
from gateway.client.streams import ALIGN, AUTO_STREAMS, split

CLIENT_RATIO = 0.9
LONG_TASK_MS = 50.0
DELAY_MS = 25
RATE_MBIT = 200
PAGE_PARTIALS = 4  # the page's partial uploads for a file of PAGE_PARTIALS_FROM or more
PAGE_PARTIALS_FROM = 64 * MiB
REPO = Path(__file__).resolve().parents[1]


def clients(h: Harness) -> list[Row]:
    file = h.files.get(h.options.size)
    rows: list[Row] = []
    for store in ("s3", "file"):
        with _bucket(h, store) as bucket:
            rows += _loopback(h, store, bucket, file)
    with h.bucket() as bucket:
        h.warm(bucket)
        rows += _proxied(h, bucket, file)
    return rows


@contextlib.contextmanager
def _bucket(h: Harness, store: str) -> Iterator[str | None]:
    if store == "file":
        yield None
        return
    with h.bucket() as bucket:
        h.warm(bucket)
        yield bucket


def _where(store: str) -> str:
    return "SeaweedFS" if store == "s3" else "file store"


def _loopback(h: Harness, store: str, bucket: str | None, file: TestFile) -> list[Row]:
    rows: list[Row] = []
    size = file.size
    label = f"{_where(store)}, loopback"
    if bucket is not None:
        from bench.scenarios import _direct_upload

        h.log(f"clients: boto3 upload_file ({label})")
        h.settle()
        with measure({"S3": h.seaweed.process.pid}) as cpu:
            seconds, problem = _direct_upload(h, bucket, file)
        rows.append(
            Row("clients", f"boto3 upload_file ({label})", size, seconds,
                failures=int(bool(problem)), note=problem, cpu=cpu)
        )  # fmt: skip
    with h.gateway(f"clients-{store}", bucket=bucket) as gw:
        pids = {"gateway": gw.pid} | ({"S3": h.seaweed.process.pid} if bucket else {})
        link = gw.link("1001")
        base = _timed(h, f"curl -T ({label})", file, gw, pids, lambda: _curl(h, link, file))
        rows.append(base)
        cli = _timed(h, f"gateway upload ({label})", file, gw, pids, lambda: _cli(link, file))
        rows.append(_against(cli, base, "curl -T"))
        page = _timed(h, f"page in Chromium ({label})", file, gw, pids, lambda: _page(link, file))
        rows.append(_page_targets(_against(page, base, "curl -T")))
        tusjs = _timed(
            h, f"tus-js-client defaults ({label})", file, gw, pids,
            lambda: _tus_js(h, link, file),
        )  # fmt: skip
        tusjs.ratio = _ratio(base, tusjs)
        rows.append(tusjs)
    return rows


def _proxied(h: Harness, bucket: str, file: TestFile) -> list[Row]:
    """Through 25 ms each way and 200 Mbit/s a connection: ratios to what the proxy allows."""
    rows: list[Row] = []
    listen = free_port()
    label = f"SeaweedFS, {DELAY_MS} ms + {RATE_MBIT} Mbit/s"
    allowed = RATE_MBIT * 1_000_000 / 8  # bytes a second, one connection
    with h.gateway(
        "clients-proxy", bucket=bucket, GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{listen}"
    ) as gw:
        pids = {"gateway": gw.pid, "S3": h.seaweed.process.pid}
        with ProxyThread(
            gw.port, listen=listen, delay_ms=DELAY_MS, rate_mbit=RATE_MBIT, record=False
        ):
            link = gw.link("1002")
            cli_streams = len(split(file.size, AUTO_STREAMS, ALIGN))  # what auto takes here
            page_streams = PAGE_PARTIALS if file.size >= PAGE_PARTIALS_FROM else 1
            for case, run, connections in (
                ("curl -T", lambda: _curl(h, link, file), 1),
                ("gateway upload", lambda: _cli(link, file), cli_streams),
                ("page in Chromium", lambda: _page(link, file), page_streams),
            ):
                row = _timed(h, f"{case} ({label})", file, gw, pids, run)
                if row.seconds:
                    row.ratio = file.size / row.seconds / (allowed * connections)
                    row.target = f">= {CLIENT_RATIO} x proxy's {connections} x {RATE_MBIT} Mbit/s"
                    row.met = row.ratio >= CLIENT_RATIO
                if case.startswith("page"):
                    _page_targets(row)
                rows.append(row)
    return rows


# -- one timed client run ------------------------------------------------------------


def _timed(h: Harness, case: str, file: TestFile, gw: Any, pids: dict[str, int], run: Any) -> Row:
    """Run one client (seconds, problem, details) under CPU accounting, as a row; its peak
    RSS is the gateway's so far (VmHWM: every client of this gateway up to this one)."""
    h.log(f"clients: {case}")
    h.settle()
    with measure(pids) as cpu:
        started = time.perf_counter()
        try:
            problem, extra = run()
        except Exception as exc:  # a broken client is a failed row, not a dead benchmark
            problem, extra = f"{type(exc).__name__}: {exc}"[:300], {}
        # A client that times itself (the page: from choosing the file to "Verified",
        # not Chromium's start) says so; the others are timed from the outside.
        seconds = extra.pop("seconds", time.perf_counter() - started)
    return Row(
        "clients",
        case,
        file.size,
        None if problem else seconds,
        failures=int(bool(problem)),
        note=problem,
        extra=extra,
        cpu=cpu,
        peak_rss=gw.peak_rss_bytes(),
    )


def _ratio(base: Row, row: Row) -> float | None:
    if not base.seconds or not row.seconds:
        return None
    return base.seconds / row.seconds


def _against(row: Row, base: Row, name: str) -> Row:
    row.ratio = _ratio(base, row)
    row.target = f">= {CLIENT_RATIO} x {name}"
    row.met = None if row.ratio is None else row.ratio >= CLIENT_RATIO
    return row


def _page_targets(row: Row) -> Row:
    longest = row.extra.get("longest_task_ms")
    heap = row.extra.get("peak_js_heap_bytes")
    if longest is None:
        return row
    row.target += f", longest task < {LONG_TASK_MS:g} ms"
    if row.met is not None:
        row.met = row.met and longest < LONG_TASK_MS
    note = f"longest main-thread task {longest:.0f} ms, peak JS heap {(heap or 0) / MiB:.1f} MiB"
    if "parts" in row.extra:  # a loaded machine can make loopback look far: say what it chose
        parts, rtt = row.extra["parts"], row.extra["rtt_ms"]
        note += f", {parts:.0f} part(s) at a measured RTT of {rtt:.0f} ms"
    row.note = "; ".join(part for part in (row.note, note) if part)
    return row


# -- the clients -----------------------------------------------------------------------


def _curl(h: Harness, link: str, file: TestFile) -> tuple[str, dict[str, float]]:
    result = asyncio.run(h.curl_put(file.path, link + "/"))
    return h.check_receipt(result, file), {}


def _cli(link: str, file: TestFile) -> tuple[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-cli-state-") as state:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "upload", "--quiet", link, str(file.path)],
            cwd=REPO,
            env={"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": state, "HOME": state},
            capture_output=True,
            text=True,
            timeout=3 * 3600,
        )
    expected = f"OK {file.sha256} {file.size} "
    if done.returncode != 0 or not done.stdout.startswith(expected):
        return f"gateway upload: rc={done.returncode} {done.stdout[-150:]} {done.stderr[-150:]}", {}
    return "", {}


def _page(link: str, file: TestFile) -> tuple[str, dict[str, float]]:
    """The page in its own process, so Chromium's CPU is counted as the client's."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.page_client", link, str(file.path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3 * 3600,
    )
    try:
        outcome: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return f"page: rc={done.returncode} {done.stderr[-300:]}", {}
    if outcome.get("sha256") != file.sha256:
        return f"page: SHA-256 {outcome.get('sha256')} is not the file's", {}
    return "", {
        "seconds": float(outcome["seconds"]),
        "longest_task_ms": float(outcome["longest_task_ms"]),
        "peak_js_heap_bytes": float(outcome["peak_js_heap_bytes"]),
        "parts": float(outcome.get("parts", 1)),
        "rtt_ms": float(outcome.get("rtt_ms", -1.0)),
    }


def _tus_js(h: Harness, link: str, file: TestFile) -> tuple[str, dict[str, float]]:
    from bench.scenarios import _gateway_tus_stored, _tus_upload

    seconds, problem = _tus_upload(h, link + "/tus/", file, None)
    if problem or seconds is None:
        return problem or "tus-js-client failed", {}
    return _gateway_tus_stored(None, link, file), {}
