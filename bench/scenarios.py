"""The scenarios: each takes the :class:`Harness` and returns its table rows.

Ratios are throughput over the baseline's throughput, measured in the same
run against the same SeaweedFS server (a fresh bucket per scenario) and the
same test file, so noise from the machine hits both sides alike.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.clients import clients
from bench.cpu import CpuUse, bound_ratio, measure
from bench.data import TestFile
from bench.download import download
from bench.harness import Harness, PutResult
from bench.proc_stats import peak_rss, proc_stats
from bench.procs import free_port
from bench.results import MiB, Row, percentile
from gateway.uploads.partsize import part_for_request

RSS_HEADROOM = 150 * MiB
PUT_RATIO = 0.9
CEILING_RATIO = 0.8
TUS_RATIO = 1.5
LEAK_RSS_SLACK = 48 * MiB
LEAK_FD_SLACK = 4
LEAK_THREAD_SLACK = 4


def human(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    if size >= MiB:
        return f"{size / MiB:.1f} MiB"
    return f"{size} B"


def _ratio(base_seconds: float | None, seconds: float | None) -> float | None:
    if not base_seconds or not seconds:
        return None
    return base_seconds / seconds


def _rss_limit(h: Harness) -> int:
    return h.options.buffer_memory + RSS_HEADROOM


# -- raw PUT vs boto3 ---------------------------------------------------------------


def put(h: Harness) -> list[Row]:
    """Pairs of boto3 ``upload_file`` then ``curl -T`` through the gateway, per size.

    Each pair has a fresh bucket and gateway; with ``--repeat N`` the pairs
    run N times and the pair with the median ratio is reported (both its
    rows), with every pair's ratio in the note and the highest peak RSS of
    any pair, so one noisy pair on a shared machine neither makes nor breaks
    the figure.
    """
    rows: list[Row] = []
    sizes = [h.options.size] + ([h.options.big_size] if h.options.big_size else [])
    for size in sizes:
        file = h.files.get(size)
        pairs = [_put_pair(h, file, i + 1) for i in range(h.options.repeat)]
        rows += _median_pair(pairs, _rss_limit(h))
        if size == h.options.big_size:
            h.files.drop(size)
    return rows


def _put_pair(h: Harness, file: TestFile, number: int) -> tuple[Row, Row]:
    """One boto3 run and one gateway run into one fresh bucket.

    The bucket is warmed first (SeaweedFS grows a new bucket's volumes on its
    first write, which neither run should pay), the order alternates from pair
    to pair (so neither side always meets the other's leftovers), and each run
    starts after the page cache's dirty pages are written out.
    """
    size = file.size
    of = f" ({number}/{h.options.repeat})" if h.options.repeat > 1 else ""
    with h.bucket() as bucket:
        h.warm(bucket)

        def direct() -> tuple[float | None, str, CpuUse]:
            h.log(f"put: boto3 upload_file {human(size)}{of}")
            h.settle()
            with measure({"S3": h.seaweed.process.pid}) as cpu:
                seconds, problem = _direct_upload(h, bucket, file)
            return seconds, problem, cpu

        def through_gateway() -> tuple[PutResult, int | None, CpuUse]:
            h.log(f"put: curl -T through the gateway {human(size)}{of}")
            with h.gateway("put", bucket=bucket) as gw:
                h.settle()
                with measure({"S3": h.seaweed.process.pid, "gateway": gw.pid}) as cpu:
                    result = asyncio.run(h.curl_put(file.path, gw.link("1001") + "/"))
                return result, gw.peak_rss_bytes(), cpu

        if number % 2:
            base_seconds, problem, base_cpu = direct()
            result, rss, cpu = through_gateway()
        else:
            result, rss, cpu = through_gateway()
            base_seconds, problem, base_cpu = direct()
    base = Row(
        "put",
        f"boto3 upload_file {human(size)}",
        size,
        base_seconds,
        failures=1 if problem else 0,
        note=problem or "default TransferConfig (8 MiB parts, 10 threads, CRC32)",
        cpu=base_cpu,
    )
    gateway = _gateway_row(
        h, "put", f"gateway curl -T {human(size)}", file, result, base_seconds, PUT_RATIO,
        "boto3", rss,
    )  # fmt: skip
    _add_cpu(gateway, cpu, base_cpu)
    return base, gateway


def _add_cpu(row: Row, cpu: CpuUse, base: CpuUse | None) -> None:
    """Give ``row`` its CPU use and, against ``base``, the ratio a CPU-bound run allows."""
    row.cpu = cpu
    bound = bound_ratio(base, cpu)
    if bound is not None:
        row.extra["cpu_bound"] = bound


def _bounds_note(rows: list[Row]) -> str:
    """``CPU-bound ratio 0.89`` (or ``ratios`` for several runs), "" if one is missing."""
    bounds = [row.extra.get("cpu_bound") for row in rows]
    if not bounds or None in bounds:
        return ""
    label = "CPU-bound ratio" if len(bounds) == 1 else "CPU-bound ratios"
    return f"{label} " + ", ".join(f"{bound:.2f}" for bound in bounds if bound is not None)


def _append_note(row: Row, text: str) -> None:
    row.note = "; ".join(part for part in (row.note, text) if part)


def _median_pair(pairs: list[tuple[Row, Row]], rss_limit: int) -> list[Row]:
    """The pair whose ratio is the median (the first failed pair, if any failed)."""
    for base, gateway in pairs:
        if base.failures or gateway.failures or gateway.ratio is None:
            return [base, gateway]
    if len(pairs) == 1:
        _append_note(pairs[0][1], _bounds_note([pairs[0][1]]))
        return list(pairs[0])
    ordered = sorted(pairs, key=lambda pair: pair[1].ratio or 0.0)
    base, gateway = ordered[(len(ordered) - 1) // 2]
    ratios = ", ".join(f"{pair[1].ratio:.2f}" for pair in pairs)
    peaks = [pair[1].peak_rss for pair in pairs]
    gateway.peak_rss = None if None in peaks else max(p for p in peaks if p is not None)
    gateway.met = (
        (gateway.ratio or 0.0) >= PUT_RATIO
        and gateway.peak_rss is not None
        and gateway.peak_rss <= rss_limit
    )
    base.note += f"; median pair of {len(pairs)}"
    gateway.note = f"median of {len(pairs)} pairs, ratios {ratios}; highest peak RSS of all"
    _append_note(gateway, _bounds_note([pair[1] for pair in pairs]))
    return [base, gateway]


def _direct_upload(h: Harness, bucket: str, file: TestFile) -> tuple[float | None, str]:
    """boto3 ``upload_file`` in its own process (bench/direct.py): seconds, or why not."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.direct", "upload", bucket, "direct.bin", str(file.path)],
        cwd=Path(__file__).resolve().parents[1],
        env=h.child_env(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    try:
        return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"]), ""
    except (ValueError, KeyError, IndexError):
        return None, f"boto3: rc={done.returncode} {done.stderr[-200:]}"


def _gateway_row(
    h: Harness,
    scenario: str,
    case: str,
    file: TestFile,
    result: PutResult,
    base_seconds: float | None,
    target: float,
    base_name: str,
    rss: int | None,
    check_rss: bool = True,
) -> Row:
    problem = h.check_receipt(result, file)
    seconds = result.seconds if not problem else None
    ratio = _ratio(base_seconds, seconds)
    limit = _rss_limit(h)
    met = ratio is not None and ratio >= target
    target_text = f">= {target} x {base_name}"
    if check_rss:
        target_text += f", RSS <= {human(limit)}"
        met = met and rss is not None and rss <= limit
    return Row(
        scenario,
        case,
        file.size,
        seconds,
        ratio=ratio,
        target=target_text,
        met=met if not problem else None,
        peak_rss=rss,
        failures=1 if problem else 0,
        note=problem[:200],
    )


# -- framework ceiling -----------------------------------------------------------------


def ceiling(h: Harness) -> list[Row]:
    file = h.files.get(h.options.size)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    h.log(f"ceiling: bare Starlette drain+hash {human(file.size)}")
    with h.server(
        "ceiling", [sys.executable, "-m", "bench.ceiling", "--port", str(port)], url=url + "/"
    ) as server:
        with measure({"bare": server.pid}) as base_cpu:
            result = asyncio.run(h.curl_put(file.path, url + "/ceiling.bin"))
        ceiling_rss = peak_rss(server.pid)
    problem = h.check_receipt(result, file)
    base_seconds = None if problem else result.seconds
    rows = [
        Row(
            "ceiling",
            f"bare Starlette drain+sha256 {human(file.size)}",
            file.size,
            base_seconds,
            peak_rss=ceiling_rss,
            failures=1 if problem else 0,
            note=problem or "uvicorn httptools+uvloop",
            cpu=base_cpu,
        )
    ]
    h.log(f"ceiling: gateway on the file store {human(file.size)}")
    with h.gateway("ceiling") as gw:
        with measure({"gateway": gw.pid}) as cpu:
            result = asyncio.run(h.curl_put(file.path, gw.link("1002") + "/"))
        rss = gw.peak_rss_bytes()
    rows.append(
        _gateway_row(
            h,
            "ceiling",
            f"gateway file store {human(file.size)}",
            file,
            result,
            base_seconds,
            CEILING_RATIO,
            "bare",
            rss,
            check_rss=False,
        )
    )
    _add_cpu(rows[-1], cpu, base_cpu)
    _append_note(rows[-1], _bounds_note(rows[-1:]))
    return rows


# -- tus --------------------------------------------------------------------------------


def _chunk_text(chunk: int | None) -> str:
    return "Infinity" if chunk is None else human(chunk)


def _chunk_arg(chunk: int | None) -> str:
    return "Infinity" if chunk is None else str(chunk)


def _tus_upload(
    h: Harness, endpoint: str, file: TestFile, chunk: int | None
) -> tuple[float | None, str]:
    script = Path(__file__).with_name("tus_upload.mjs")
    done = subprocess.run(
        [h.node(), str(script), endpoint, str(file.path), _chunk_arg(chunk), "tus.bin"],
        cwd=script.parent.parent,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return None, f"tus client: rc={done.returncode} {done.stderr[-300:]}"
    outcome: dict[str, Any] = json.loads(lines[-1])
    if not outcome.get("ok"):
        return None, str(outcome.get("error"))[:300]
    return float(outcome["seconds"]), ""


def _gateway_tus_stored(gw: Any, link: str, file: TestFile) -> str:
    """ "" when the link's receipts list the file with the right SHA-256."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(link + "/files", timeout=10)
        if response.status_code == 200:
            body = response.json()
            files = body.get("files", body) if isinstance(body, dict) else body
            for item in files if isinstance(files, list) else []:
                if item.get("sha256") == file.sha256 and item.get("size") == file.size:
                    return ""
        time.sleep(0.5)
    return "gateway's receipts do not list the file with its SHA-256"


def tus(h: Harness) -> list[Row]:
    """The same tus client and file against the two peers and the gateway, per chunk size.

    With ``--repeat N`` each chunk size runs N rounds and the round whose
    gateway ratio is the median is reported, with every round's ratio in the
    note, as for put.
    """
    rows: list[Row] = []
    for chunk in h.options.tus_chunks:
        rounds = [_tus_round(h, chunk, i + 1) for i in range(h.options.repeat)]
        rows += _median_round(rounds)
    return rows


def _median_round(rounds: list[list[Row]]) -> list[Row]:
    """The round (its rows, the gateway's last) whose gateway ratio is the median."""
    for round_rows in rounds:
        if any(row.failures for row in round_rows) or round_rows[-1].ratio is None:
            return round_rows
    if len(rounds) == 1:
        _append_note(rounds[0][-1], _bounds_note([rounds[0][-1]]))
        return rounds[0]
    ordered = sorted(rounds, key=lambda round_rows: round_rows[-1].ratio or 0.0)
    chosen = ordered[(len(ordered) - 1) // 2]
    ratios = ", ".join(f"{round_rows[-1].ratio:.2f}" for round_rows in rounds)
    chosen[-1].note += f"; median of {len(rounds)} rounds, ratios {ratios}"
    _append_note(chosen[-1], _bounds_note([round_rows[-1] for round_rows in rounds]))
    return chosen


def _tus_round(h: Harness, chunk: int | None, number: int = 1) -> list[Row]:
    file = h.files.get(h.options.size)
    chunk_text = _chunk_text(chunk)
    if chunk is None:
        chunk_text += " (the client's default)"
    note = f"tus-js-client, chunkSize {chunk_text}"
    rows: list[Row] = []
    peers: dict[str, float] = {}
    peer_cpu: dict[str, CpuUse] = {}
    with h.bucket() as bucket:
        h.warm(bucket)
        port = free_port()
        of = f" ({number}/{h.options.repeat})" if h.options.repeat > 1 else ""
        h.log(f"tus: @tus/server + @tus/s3-store {human(file.size)}, chunkSize {chunk_text}{of}")
        script = str(Path(__file__).with_name("tus_node_peer.mjs"))
        with h.server(
            "tus-node", [h.node(), script, str(port), bucket], url=f"http://127.0.0.1:{port}/files"
        ) as server:
            h.settle()
            with measure({"S3": h.seaweed.process.pid, "@tus/server": server.pid}) as cpu:
                seconds, problem = _tus_upload(h, f"http://127.0.0.1:{port}/files", file, chunk)
            rss = peak_rss(server.pid)
        rows.append(
            Row(
                "tus",
                f"@tus/server+s3-store {human(file.size)}, chunks {_chunk_text(chunk)}",
                file.size,
                seconds,
                peak_rss=rss,
                failures=1 if problem else 0,
                note=problem or note + ", 8 MiB parts (default)",
                cpu=cpu,
            )
        )
        if seconds:
            peers["@tus/server"] = seconds
            peer_cpu["@tus/server"] = cpu

        port = free_port()
        h.log(f"tus: tuspyserver S3Storage {human(file.size)}, chunkSize {chunk_text}{of}")
        argv = [sys.executable, "-m", "bench.tuspy_peer", "--port", str(port), "--bucket", bucket]
        with h.server("tuspyserver", argv, url=f"http://127.0.0.1:{port}/files/") as server:
            h.settle()
            with measure({"S3": h.seaweed.process.pid, "tuspyserver": server.pid}) as cpu:
                seconds, problem = _tus_upload(h, f"http://127.0.0.1:{port}/files/", file, chunk)
            rss = peak_rss(server.pid)
        rows.append(
            Row(
                "tus",
                f"tuspyserver S3Storage {human(file.size)}, chunks {_chunk_text(chunk)}",
                file.size,
                seconds,
                peak_rss=rss,
                failures=1 if problem else 0,
                note=problem or note + ", 5 MiB parts (default)",
                cpu=cpu,
            )
        )
        if seconds:
            peers["tuspyserver"] = seconds
            peer_cpu["tuspyserver"] = cpu

        h.log(f"tus: gateway {human(file.size)}, chunkSize {chunk_text}{of}")
        with h.gateway("tus", bucket=bucket) as gw:
            link = gw.link("1003")
            h.settle()
            with measure({"S3": h.seaweed.process.pid, "gateway": gw.pid}) as cpu:
                seconds, problem = _tus_upload(h, link + "/tus/", file, chunk)
            if not problem:
                problem = _gateway_tus_stored(gw, link, file)
            rss = gw.peak_rss_bytes()
        fastest_name = min(peers, key=lambda name: peers[name]) if peers else "peer"
        ratio = _ratio(peers.get(fastest_name), None if problem else seconds)
        rows.append(
            Row(
                "tus",
                f"gateway tus {human(file.size)}, chunks {_chunk_text(chunk)}",
                file.size,
                None if problem else seconds,
                ratio=ratio,
                target=f">= {TUS_RATIO} x {fastest_name}",
                met=None if problem else (ratio is not None and ratio >= TUS_RATIO),
                peak_rss=rss,
                failures=1 if problem else 0,
                note=problem or note + f", {human(part_for_request(chunk or file.size))} parts",
            )
        )
        _add_cpu(rows[-1], cpu, peer_cpu.get(fastest_name))
    return rows


# -- concurrency --------------------------------------------------------------------------


async def _many(
    h: Harness, count: int, concurrency: int, make_url: Callable[[int], str], file: TestFile
) -> tuple[float, list[PutResult], list[str]]:
    """``count`` curl uploads, ``concurrency`` at a time; wall time, results, problems."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> PutResult:
        async with gate:
            return await h.curl_put(file.path, make_url(index))

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - started
    problems = [p for p in (h.check_receipt(r, file) for r in results) if p]
    return wall, list(results), problems


def concurrency(h: Harness) -> list[Row]:
    rows: list[Row] = []
    file = h.files.get(h.options.concurrent_size)
    limit = _rss_limit(h)
    for n in h.options.concurrency:
        h.log(f"concurrency: {n} x {human(file.size)}")
        with h.bucket() as bucket, h.gateway(f"c{n}", bucket=bucket) as gw:
            links = [gw.link(f"c{n}-{i}") for i in range(n)]

            def url(i: int, links: list[str] = links) -> str:
                return f"{links[i]}/file-{i}.bin"

            wall, results, problems = asyncio.run(_many(h, n, n, url, file))
            rss = gw.peak_rss_bytes()
        times = [r.seconds for r in results if r.ok]
        p50, p99 = percentile(times, 50), percentile(times, 99)
        note = (
            f"p50 {p50:.1f} s, p99 {p99:.1f} s to receipt; budget {human(h.options.buffer_memory)}"
        )
        if problems:
            note += (
                f"; {len(problems)} failed: {collections.Counter(problems).most_common(1)[0][0]}"
            )
        rows.append(
            Row(
                "concurrency",
                f"{n} x {human(file.size)}",
                n * file.size,
                wall,
                target=f"0 failures, RSS <= {human(limit)}",
                met=not problems and rss <= limit,
                peak_rss=rss,
                failures=len(problems),
                note=note[:240],
                extra={"p50": p50, "p99": p99},
            )
        )
    return rows


# -- small files to Zendesk -----------------------------------------------------------------


def small(h: Harness) -> list[Row]:
    from tests.support.zendesk import start_zendesk_emulator

    count, size = h.options.small_count, h.options.small_size
    emulator = start_zendesk_emulator(log_dir=h.workdir)
    h.cleanup.push(emulator.stop)
    tickets = [5001, 5002, 5003, 5004]
    for ticket in tickets:
        emulator.create_ticket(ticket)
    payload = os.urandom(size)
    h.log(f"small: {count} x {human(size)} to the Zendesk emulator")
    try:
        with h.bucket() as bucket, h.gateway("small", bucket=bucket, **emulator.env()) as gw:
            links = [gw.link(str(t)) for t in tickets]

            async def send_all() -> tuple[float, list[float], int]:
                gate = asyncio.Semaphore(8)
                latencies: list[float] = []
                failed = 0
                limits = httpx.Limits(max_connections=8)
                async with httpx.AsyncClient(timeout=120, limits=limits) as client:

                    async def one(i: int) -> None:
                        nonlocal failed
                        async with gate:
                            started = time.perf_counter()
                            url = f"{links[i % len(links)]}/small-{i}.bin"
                            try:
                                response = await client.put(url, content=payload)
                                if response.status_code != 201:
                                    failed += 1
                                else:
                                    latencies.append(time.perf_counter() - started)
                            except httpx.HTTPError:
                                failed += 1

                    started = time.perf_counter()
                    await asyncio.gather(*(one(i) for i in range(count)))
                    return time.perf_counter() - started, latencies, failed

            run_started = time.perf_counter()
            wall, latencies, failed = asyncio.run(send_all())
            delivered = 0
            deadline = time.monotonic() + max(60.0, count * 0.5)
            while time.monotonic() < deadline:
                state = emulator.state()
                delivered = sum(
                    len(comment["attachments"])
                    for ticket in state["tickets"].values()
                    for comment in ticket["comments"]
                )
                if delivered >= count - failed:
                    break
                time.sleep(0.25)
            delivered_after = time.perf_counter() - run_started
            rss = gw.peak_rss_bytes()
    finally:
        emulator.stop()
    undelivered = max(0, count - failed - delivered)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    fps = len(latencies) / wall if wall else 0.0
    note = (
        f"{fps:.1f} files/s, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms to receipt; "
        f"all {delivered} on tickets after {delivered_after:.1f} s"
    )
    if undelivered:
        note += f"; {undelivered} not delivered"
    return [
        Row(
            "small-files",
            f"{count} x {human(size)} -> zendesk",
            count * size,
            wall,
            peak_rss=rss,
            failures=failed + undelivered,
            note=note,
            extra={"files_per_s": fps, "p99": p99, "delivered_s": delivered_after},
        )
    ]


# -- leak check ---------------------------------------------------------------------------------


def leak(h: Harness) -> list[Row]:
    count, file = h.options.leak_count, h.files.get(h.options.leak_size)
    warmup = max(8, count // 10)
    h.log(f"leak: {warmup} warm-up then {count} x {human(file.size)}")
    with h.bucket() as bucket, h.gateway("leak", bucket=bucket) as gw:
        links = [gw.link(f"leak-{i}") for i in range(warmup + count)]
        _, _, warm_problems = asyncio.run(
            _many(h, warmup, 4, lambda i: f"{links[i]}/warm-{i}.bin", file)
        )
        settle = 0.5 if h.options.quick else 3.0
        time.sleep(settle)
        base = proc_stats(gw.process.pid if gw.process else 0)
        wall, _, problems = asyncio.run(
            _many(h, count, 4, lambda i: f"{links[warmup + i]}/leak-{i}.bin", file)
        )
        time.sleep(settle)
        after = proc_stats(gw.process.pid if gw.process else 0)
    failures = len(warm_problems) + len(problems)
    met = (
        after.rss <= base.rss + LEAK_RSS_SLACK
        and after.fds <= base.fds + LEAK_FD_SLACK
        and after.threads <= base.threads + LEAK_THREAD_SLACK
    )
    note = (
        f"RSS {base.rss / MiB:.0f} -> {after.rss / MiB:.0f} MiB, "
        f"fds {base.fds} -> {after.fds}, threads {base.threads} -> {after.threads}"
    )
    if failures:
        note += f"; {failures} failed: {(warm_problems + problems)[0][:120]}"
    return [
        Row(
            "leak",
            f"{count} x {human(file.size)} after {warmup} warm-up",
            count * file.size,
            wall,
            target=f"RSS +{human(LEAK_RSS_SLACK)}, fds/threads flat",
            met=met,
            peak_rss=after.peak_rss,
            failures=failures,
            note=note,
            extra={"rss_base": base.rss, "rss_after": after.rss},
        )
    ]


# -- profile --------------------------------------------------------------------------------------


def profile(h: Harness) -> list[Row]:
    """One raw PUT under py-spy: an SVG flame graph and a text summary of the hottest frames."""
    from bench.profile_summary import summarise

    file = h.files.get(h.options.size)
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        raise RuntimeError(f"py-spy not found at {pyspy}: pip install py-spy")
    h.options.results.mkdir(parents=True, exist_ok=True)
    raw = h.options.results / "profile-put.txt"
    svg = h.options.results / "profile-put.svg"
    rows: list[Row] = []
    # The text summary samples only the thread holding the GIL (where Python spends CPU);
    # the flame graph shows every thread, idle ones too (where uploads wait).
    for fmt, out, flag in (("raw", raw, "--gil"), ("flamegraph", svg, "--idle")):
        with h.bucket() as bucket, h.gateway("profile", bucket=bucket) as gw:
            assert gw.process is not None
            h.log(f"profile: 1 PUT of {human(file.size)} under py-spy ({fmt})")
            spy = subprocess.Popen(
                [
                    str(pyspy),
                    "record",
                    "--pid",
                    str(gw.process.pid),
                    "--format",
                    fmt,
                    "-o",
                    str(out),
                    "--rate",
                    "200",
                    "--threads",
                    flag,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            h.cleanup.push(spy.kill)
            time.sleep(1.0)
            result = asyncio.run(h.curl_put(file.path, gw.link("1004") + "/"))
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        problem = h.check_receipt(result, file)
        if fmt == "raw":
            top = summarise(raw) if raw.exists() else "(no profile written)"
            (h.options.results / "profile-put-summary.txt").write_text(top)
            rows.append(
                Row(
                    "profile",
                    f"gateway curl -T {human(file.size)} under py-spy",
                    file.size,
                    None if problem else result.seconds,
                    failures=1 if problem else 0,
                    note=problem or f"see {raw.name}, profile-put-summary.txt, {svg.name}",
                )
            )
    return rows


SCENARIOS: dict[str, Callable[[Harness], list[Row]]] = {
    "put": put,
    "ceiling": ceiling,
    "tus": tus,
    "concurrency": concurrency,
    "small": small,
    "leak": leak,
    "profile": profile,
    "download": download,
    "clients": clients,
}
DEFAULT_SCENARIOS = [
    "put", "ceiling", "tus", "clients", "concurrency", "small", "leak", "download",
]  # fmt: skip
SCENARIO_TITLES = {
    "put": "put",
    "ceiling": "ceiling",
    "tus": "tus",
    "concurrency": "concurrency",
    "small": "small-files",
    "leak": "leak",
    "profile": "profile",
    "download": "download",
    "clients": "clients",
}
