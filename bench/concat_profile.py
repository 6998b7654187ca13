"""Where a parallel tus upload's time goes: partial uploads, then the final one.

Starts a gateway (file store, or SeaweedFS with ``--store s3``), uploads one
file as ``--partials`` tus partial uploads in ``--patch``-sized PATCHes, all
at once, then POSTs the final upload and polls it with HEAD until it is a
file. Prints the time of each phase, the gateway's storage calls per
operation in each phase (``gateway_storage_request_seconds`` from its
``/metrics``), the CPU seconds the gateway (and SeaweedFS) spent joining,
and whether the receipt's SHA-256 matches. With ``--py-spy`` it also
records the gateway during the join (``py-spy record --format raw``) and
prints :func:`bench.profile_summary.summarise` of it.

    python -m bench.concat_profile --store s3 --size 1GiB
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.cpu import process_cpu
from bench.data import make_file
from bench.profile_summary import summarise
from gateway.units import parse_size
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import DEPLOYMENT_VOLUME_MB, start_seaweed

TUS = {"Tus-Resumable": "1.0.0"}
_SAMPLE = re.compile(r'gateway_storage_request_seconds_(sum|count)\{op="([^"]+)"\} (\S+)')

Sample = dict[tuple[str, str], float]


def storage_calls(url: str) -> Sample:
    text = httpx.get(url + "/metrics").text
    return {(m[2], m[1]): float(m[3]) for m in _SAMPLE.finditer(text)}


def calls_between(before: Sample, after: Sample) -> list[str]:
    lines = []
    for op in sorted({op for op, _ in after}):
        count = after.get((op, "count"), 0.0) - before.get((op, "count"), 0.0)
        total = after.get((op, "sum"), 0.0) - before.get((op, "sum"), 0.0)
        if count:
            lines.append(
                f"  {op:<18} {count:5.0f} calls {total:8.2f} s  {1000 * total / count:8.1f} ms each"
            )
    return lines


def cpu_seconds(pid: int) -> float:
    return process_cpu(pid) or 0.0


async def upload_partials(
    link: str, file: Path, sizes: list[int], patch: int
) -> tuple[list[str], list[float]]:
    """Every partial at once, each on its own connection; their URLs and each PATCH's seconds."""
    seconds: list[float] = []

    async def one(index: int) -> str:
        start = sum(sizes[:index])
        async with httpx.AsyncClient(timeout=600) as client:
            headers = {**TUS, "Upload-Length": str(sizes[index]), "Upload-Concat": "partial"}
            created = await client.post(f"{link}/tus/", headers=headers)
            created.raise_for_status()
            location = created.headers["Location"]
            offset = 0
            with open(file, "rb") as fh:
                while offset < sizes[index]:
                    fh.seek(start + offset)
                    body = fh.read(min(patch, sizes[index] - offset))
                    began = time.perf_counter()
                    answer = await client.patch(
                        location,
                        content=body,
                        headers={
                            **TUS,
                            "Upload-Offset": str(offset),
                            "Content-Type": "application/offset+octet-stream",
                        },
                    )
                    seconds.append(time.perf_counter() - began)
                    if answer.status_code != 204:
                        raise RuntimeError(f"PATCH answered {answer.status_code}: {answer.text}")
                    offset = int(answer.headers["Upload-Offset"])
            return location

    locations = await asyncio.gather(*(one(i) for i in range(len(sizes))))
    return list(locations), seconds


async def join(link: str, locations: list[str], size: int) -> str:
    """POST the final upload, poll until it is a file; its receipt's SHA-256."""
    async with httpx.AsyncClient(timeout=600) as client:
        headers = {**TUS, "Upload-Concat": "final;" + " ".join(locations)}
        answer = await client.post(f"{link}/tus/", headers=headers)
        if answer.status_code != 201:
            raise RuntimeError(f"final POST answered {answer.status_code}: {answer.text}")
        final = answer.headers["Location"]
        while answer.headers.get("Upload-Offset") != str(size):
            await asyncio.sleep(0.05)
            answer = await client.head(final, headers=TUS)
        file_id = answer.headers["X-Gateway-File-Id"]
        receipts = (await client.get(f"{link}/files")).json()
    listed = receipts["files"] if isinstance(receipts, dict) else receipts
    return str(next(r["sha256"] for r in listed if r["file_id"] == file_id))


@contextmanager
def py_spy(pid: int, out: Path, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy_bin, "record", "-p", str(pid), "-o", str(out), "--format", "raw", "-r", "100"]
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def run(args: argparse.Namespace, workdir: Path) -> None:
    size, patch = parse_size(args.size), parse_size(args.patch)
    file = workdir / "upload.bin"
    expected = make_file(file, size).sha256
    per = size // args.partials
    sizes = [per] * (args.partials - 1) + [size - per * (args.partials - 1)]
    env: dict[str, str] = {"GATEWAY_LOG_LEVEL": "warning"}
    with ExitStack() as stack:
        pids: dict[str, int] = {}
        if args.store == "s3":
            seaweed = start_seaweed(workdir / "seaweed", volume_size_mb=DEPLOYMENT_VOLUME_MB)
            stack.callback(seaweed.stop)
            bucket = seaweed.make_bucket("concat-profile")
            env.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=bucket, **seaweed.env())
            pids["weed"] = seaweed.process.pid
        gateway: GatewayProcess = start_gateway(workdir / "gw", gateway_env(workdir / "gw", **env))
        stack.callback(gateway.kill)
        pids = {"gateway": gateway.pid, **pids}
        link = gateway.link()

        first = storage_calls(gateway.url)
        began = time.perf_counter()
        locations, patches = asyncio.run(upload_partials(link, file, sizes, patch))
        received = time.perf_counter() - began
        second = storage_calls(gateway.url)
        spy_out = workdir / "join.pyspy"
        with py_spy(gateway.pid, spy_out, args.py_spy):
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            began = time.perf_counter()
            sha256 = asyncio.run(join(link, locations, size))
            joined = time.perf_counter() - began
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        third = storage_calls(gateway.url)

    print(f"store {args.store}, {size} bytes as {args.partials} partial uploads")
    print(
        f"partial uploads: {received:.2f} s ({size / received / 1e6:.0f} MB/s), "
        f"{len(patches)} PATCHes of {patch} bytes: mean {sum(patches) / len(patches):.2f} s, "
        f"max {max(patches):.2f} s"
    )
    verdict = "matches" if sha256 == expected else "DIFFERS"
    print(f"final POST to file: {joined:.2f} s; the receipt's SHA-256 {verdict}")
    print("CPU seconds while joining: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    print("storage calls during the partial uploads:", *calls_between(first, second), sep="\n")
    print("storage calls while joining:", *calls_between(second, third), sep="\n")
    if args.py_spy and spy_out.exists():
        print(summarise(spy_out, top=15))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.concat_profile", description=__doc__)
    parser.add_argument("--store", choices=["file", "s3"], default="file")
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--partials", type=int, default=4)
    parser.add_argument("--patch", default="64MiB", help="bytes per PATCH")
    parser.add_argument("--py-spy", action="store_true", help="profile the join with py-spy")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="concat-profile-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
