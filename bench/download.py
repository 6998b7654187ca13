"""The download scenario: pulling a stored file back, four ways, on the same SeaweedFS.

Per size, one file is uploaded through a gateway (not timed), then fetched
by, in turn:

- boto3 ``download_file`` straight from the bucket (the baseline);
- ``curl -o`` through the gateway's signed link (proxy mode);
- ``gateway download --connections 4`` through the same link;
- in redirect mode (a second gateway process on the same bucket with
  ``GATEWAY_DOWNLOAD_REDIRECT=true``): ``gateway download --connections 4``
  and ``curl -L``, whose bytes go from SeaweedFS to the client directly.

Every result is checked against the file's SHA-256 (outside the timing).
Each row has the CPU seconds per GiB of SeaweedFS, the gateway and the
client, and the gateway's peak RSS. Then ``downloads`` clients fetch the
first size through the proxy at once (to ``/dev/null``, sizes checked) while
the gateway's RSS is watched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.cpu import CpuUse, bound_ratio, measure
from bench.data import TestFile
from bench.harness import Harness
from bench.results import Row
from tests.support.gateway import GatewayProcess, staff_headers

PROXY_RATIO = 0.9
CLIENT_RATIO = 1.0
RSS_LIMIT = 256 * 1024 * 1024  # no part buffers on the download path: far below uploads'
TICKET = "3001"
REPO = Path(__file__).resolve().parents[1]


def _human(size: int) -> str:
    from bench.scenarios import human

    return human(size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(16 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stored(h: Harness, gw: GatewayProcess, file: TestFile) -> tuple[str, str]:
    """Upload ``file`` through ``gw``; its file id and a download link from the staff API."""
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-T", str(file.path), gw.link(TICKET) + "/"],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    receipt = json.loads(done.stdout)
    if receipt.get("sha256") != file.sha256:
        raise RuntimeError(f"upload for the download scenario failed: {done.stdout[:200]}")
    return receipt["file_id"], _link(gw, receipt["file_id"])


def _link(gw: GatewayProcess, file_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = httpx.get(
            f"{gw.url}/api/tickets/{TICKET}/files", headers=staff_headers(gw), timeout=30
        ).json()["files"]
        for item in listing:
            if item["file_id"] == file_id and item["download_url"]:
                return str(item["download_url"])
        time.sleep(0.5)
    raise RuntimeError("the staff API gave no download link")


@contextlib.contextmanager
def _target(h: Harness, name: str) -> Iterator[Path]:
    directory = h.workdir / f"dl-{name}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=env, cwd=REPO)
    return time.perf_counter() - started, done.returncode, done.stdout + done.stderr[-300:]


def _row(
    case: str, file: TestFile, seconds: float | None, problem: str, cpu: CpuUse, note: str = ""
) -> Row:
    return Row(
        "download", case, file.size, None if problem else seconds,
        failures=1 if problem else 0, note=problem[:200] or note, cpu=cpu,
    )  # fmt: skip


def _against(row: Row, base: Row, target: float, rss: int | None) -> Row:
    if base.seconds and row.seconds:
        row.ratio = base.seconds / row.seconds
    row.target = f">= {target} x boto3"
    row.met = None if row.failures or row.ratio is None else row.ratio >= target
    row.peak_rss = rss
    bound = bound_ratio(base.cpu, row.cpu)
    if bound is not None:
        row.extra["cpu_bound"] = bound
        row.note = "; ".join(p for p in (row.note, f"CPU-bound ratio {bound:.2f}") if p)
    return row


def _direct(h: Harness, bucket: str, file_id: str, file: TestFile) -> Row:
    with _target(h, "direct") as directory:
        dest = directory / "direct.bin"
        h.log(f"download: boto3 download_file {_human(file.size)}")
        h.settle()
        with measure({"S3": h.seaweed.process.pid}) as cpu:
            seconds, rc, out = _timed(
                [sys.executable, "-m", "bench.direct", "download", bucket,
                 f"files/{file_id}/data", str(dest)],
                env=h.child_env(),
            )  # fmt: skip
        problem = "" if rc == 0 and _sha256(dest) == file.sha256 else f"boto3: rc={rc} {out}"
    return _row(f"boto3 download_file {_human(file.size)}", file, seconds, problem, cpu,
                "default TransferConfig (8 MiB parts, 10 threads)")  # fmt: skip


def _curl(h: Harness, gw: GatewayProcess, url: str, file: TestFile, label: str) -> Row:
    with _target(h, "curl") as directory:
        dest = directory / "curl.bin"
        h.log(f"download: {label} {_human(file.size)}")
        h.settle()
        with measure({"S3": h.seaweed.process.pid, "gateway": gw.pid}) as cpu:
            seconds, rc, out = _timed(["curl", "-sS", "--noproxy", "*", "-L", "-o", str(dest), url])
        problem = "" if rc == 0 and _sha256(dest) == file.sha256 else f"curl: rc={rc} {out}"
    return _row(f"{label} {_human(file.size)}", file, seconds, problem, cpu)


def _client(h: Harness, gw: GatewayProcess, url: str, file: TestFile, label: str) -> Row:
    with _target(h, "client") as directory:
        h.log(f"download: {label} {_human(file.size)}")
        h.settle()
        argv = [sys.executable, "-m", "gateway", "download", "--quiet", "--connections", "4",
                "-o", str(directory), url]  # fmt: skip
        with measure({"S3": h.seaweed.process.pid, "gateway": gw.pid}) as cpu:
            seconds, rc, out = _timed(argv, env=h.child_env())
        ok = rc == 0 and out.startswith(f"OK {file.sha256} {file.size} ")
        problem = "" if ok else f"gateway download: rc={rc} {out}"
    return _row(f"{label} {_human(file.size)}", file, seconds, problem, cpu)


def _many(h: Harness, gw: GatewayProcess, url: str, file: TestFile, count: int) -> Row:
    """``count`` curl downloads of the same link at once, to /dev/null, RSS watched."""
    h.log(f"download: {count} x {_human(file.size)} at once through the gateway")
    h.settle()
    base_rss = gw.rss_bytes()

    def one(_: int) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}", url],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        ok = done.returncode == 0 and done.stdout.strip() == str(file.size)
        return time.perf_counter() - started, "" if ok else f"rc={done.returncode} {done.stdout}"

    started = time.perf_counter()
    with measure({"S3": h.seaweed.process.pid, "gateway": gw.pid}) as cpu:
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            results = list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    rss = gw.peak_rss_bytes()
    failures = sum(1 for _, problem in results if problem)
    return Row(
        "download",
        f"{count} x curl through the gateway at once, {_human(file.size)} each",
        file.size * count,
        wall if not failures else None,
        target=f"peak RSS <= {_human(RSS_LIMIT)}",
        met=None if failures else rss <= RSS_LIMIT,
        peak_rss=rss,
        failures=failures,
        note=f"RSS before {base_rss / 2**20:.0f} MiB; slowest {max(s for s, _ in results):.1f} s",
        cpu=cpu,
    )


def download(h: Harness) -> list[Row]:
    rows: list[Row] = []
    sizes = [h.options.size] + ([h.options.big_size] if h.options.big_size else [])
    for index, size in enumerate(sizes):
        file = h.files.get(size)
        with h.bucket() as bucket:
            h.warm(bucket)
            with h.gateway("download", bucket=bucket) as gw:
                file_id, url = _stored(h, gw, file)
                base = _direct(h, bucket, file_id, file)
                rows.append(base)
                proxy = _curl(h, gw, url, file, "curl through the gateway (proxy)")
                rows.append(_against(proxy, base, PROXY_RATIO, gw.peak_rss_bytes()))
                client = _client(h, gw, url, file, "gateway download, 4 connections (proxy)")
                rows.append(_against(client, base, CLIENT_RATIO, gw.peak_rss_bytes()))
                secret = gw.env["GATEWAY_SECRET"]
                staff = gw.env["GATEWAY_STAFF_TOKEN"]
                if index == 0:
                    count = 4 if h.options.quick else 16
                    with h.gateway("download-many", bucket=bucket, GATEWAY_SECRET=secret) as many:
                        rows.append(_many(h, many, _link(many, file_id), file, count))
            with h.gateway(
                "download-redirect", bucket=bucket, GATEWAY_SECRET=secret,
                GATEWAY_STAFF_TOKEN=staff, GATEWAY_DOWNLOAD_REDIRECT="true",
            ) as redirecting:  # fmt: skip
                link = _link(redirecting, file_id)
                client = _client(
                    h, redirecting, link, file, "gateway download, 4 connections (redirect)"
                )
                rows.append(_against(client, base, CLIENT_RATIO, redirecting.peak_rss_bytes()))
                curl = _curl(h, redirecting, link, file, "curl -L (redirect)")
                rows.append(_against(curl, base, PROXY_RATIO, redirecting.peak_rss_bytes()))
                sent = _metric(redirecting, "gateway_download_bytes_total")
                if sent:
                    rows[-1].failures += 1
                    rows[-1].note += f"; {sent:.0f} bytes went through the gateway"
        if size == h.options.big_size:
            h.files.drop(size)
    return rows


def _metric(gw: GatewayProcess, name: str) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0
