"""``python -m bench``: pick scenarios and sizes, run them on one SeaweedFS, report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import Harness, Options
from bench.machine import machine_info
from bench.procs import Cleanup, interrupt_on_sigterm
from bench.report import chart, markdown, table
from bench.results import Row
from bench.scenarios import DEFAULT_SCENARIOS, SCENARIO_TITLES, SCENARIOS
from gateway.units import parse_size

RESULTS = Path(__file__).resolve().parent / "results"

FULL = {
    "size": "1GiB",
    "big_size": "5GiB",
    "concurrency": "16,64",
    "concurrent_size": "256MiB",
    "small_count": 200,
    "small_size": "1MiB",
    "leak_count": 200,
    "leak_size": "24MiB",
    "repeat": 3,
}
QUICK = {
    "size": "8MiB",
    "big_size": "none",
    "concurrency": "4,8",
    "concurrent_size": "6MiB",
    "small_count": 20,
    "small_size": "64KiB",
    "leak_count": 20,
    "leak_size": "1MiB",
    "repeat": 1,
}


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--gateway-env: expected NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Gateway throughput and memory against its baselines, on one SeaweedFS. "
        f"Full defaults: {FULL}. --quick: {QUICK}.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (profile is opt-in)",
    )
    p.add_argument("--size", help="file size for put, ceiling and tus (default 1GiB)")
    p.add_argument("--big-size", help="second put size, 'none' to skip (default 5GiB)")
    p.add_argument("--concurrency", help="comma-separated upload counts (default 16,64)")
    p.add_argument("--concurrent-size", help="file size per concurrent upload (default 256MiB)")
    p.add_argument("--small-count", type=int, help="number of small files (default 200)")
    p.add_argument("--small-size", help="small file size (default 1MiB)")
    p.add_argument("--leak-count", type=int, help="uploads in the leak check (default 200)")
    p.add_argument("--leak-size", help="file size in the leak check (default 24MiB)")
    p.add_argument(
        "--tus-chunk",
        default="Infinity,64MiB",
        help="tus-js-client chunkSize, comma-separated for one round each; 'Infinity' is "
        "the client's default, one PATCH per file (default Infinity,64MiB)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        help="put pairs per size and tus rounds per chunk size; the median is reported (default 3)",
    )
    p.add_argument("--buffer-memory", default="256MiB", help="GATEWAY_BUFFER_MEMORY")
    p.add_argument("--results", type=Path, default=RESULTS, help="where latest.md and the PNG go")
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every gateway process (repeatable), for experiments",
    )
    p.add_argument("--workdir", type=Path, help="parent of the temp dir (test files, data)")
    return p


def options_from(args: argparse.Namespace) -> Options:
    preset = QUICK if args.quick else FULL

    def pick(name: str) -> object:
        value = getattr(args, name)
        return preset[name] if value is None else value

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    big = str(pick("big_size"))
    try:
        counts = [int(c) for c in str(pick("concurrency")).split(",") if c.strip()]
    except ValueError:
        raise SystemExit("--concurrency: expected comma-separated numbers") from None
    chunks: list[int | None] = [
        None if text.strip().lower() in ("infinity", "inf") else _size(text.strip())
        for text in args.tus_chunk.split(",")
        if text.strip()
    ]
    return Options(
        scenarios=scenarios,
        size=_size(str(pick("size"))),
        big_size=None if big.lower() == "none" else _size(big),
        concurrency=counts,
        concurrent_size=_size(str(pick("concurrent_size"))),
        small_count=int(str(pick("small_count"))),
        small_size=_size(str(pick("small_size"))),
        leak_count=int(str(pick("leak_count"))),
        leak_size=_size(str(pick("leak_size"))),
        tus_chunks=chunks,
        repeat=max(1, int(str(pick("repeat")))),
        buffer_memory=_size(args.buffer_memory),
        results=args.results,
        quick=args.quick,
        gateway_env=_env_pairs(args.gateway_env),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = options_from(args)
    interrupt_on_sigterm()
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-", dir=args.workdir))
    cleanup = Cleanup()
    cleanup.push(lambda: shutil.rmtree(workdir, ignore_errors=True))
    rows: list[Row] = []
    try:
        from tests.support.seaweed import DEPLOYMENT_VOLUME_MB, start_seaweed

        print(f"[bench] workdir {workdir}; starting SeaweedFS", file=sys.stderr, flush=True)
        seaweed = start_seaweed(workdir / "seaweed", volume_size_mb=DEPLOYMENT_VOLUME_MB)
        cleanup.push(seaweed.stop)
        harness = Harness(options, workdir, seaweed, cleanup)
        cleanup.push(harness.files.remove_all)
        for name in options.scenarios:
            started = time.monotonic()
            try:
                rows += SCENARIOS[name](harness)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                traceback.print_exc()
                rows.append(
                    Row(
                        SCENARIO_TITLES[name],
                        "error",
                        failures=1,
                        note=f"{type(exc).__name__}: {exc}"[:240],
                    )
                )
            harness.log(f"{name} done in {time.monotonic() - started:.0f} s")
    except KeyboardInterrupt:
        print("[bench] interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        cleanup.close()
    print(table(rows))
    options.results.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    (options.results / "latest.md").write_text(
        markdown(
            rows,
            machine,
            command.strip(),
            time.strftime("%Y-%m-%d %H:%M %Z"),
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        )
    )
    chart(rows, options.results / "throughput.png")
    return 1 if any(row.failures for row in rows) else 0
