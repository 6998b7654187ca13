"""`python -m bench --quick` end to end with tiny sizes: every scenario runs and nothing fails.

No timing is asserted (the numbers on a shared machine mean nothing); what
must hold is that the suite starts and stops all its servers, every scenario
produces its row, no upload fails, and the results file and chart are written.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.ci import missing_tool
from tests.support.seaweed import weed_binary

REPO = Path(__file__).resolve().parents[1]
SCENARIO_ROWS = {
    "put", "ceiling", "tus", "clients", "concurrency", "small-files", "leak", "download",
}  # fmt: skip


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    missing_tool(message)


def _rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    assert lines, f"no table printed:\n{output[-3000:]}"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:2] == ["scenario", "case"], header
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_quick_bench_runs_every_scenario(tmp_path: Path) -> None:
    _require(weed_binary().exists(), f"SeaweedFS binary not found at {weed_binary()}")
    _require(shutil.which("node") is not None, "node is not installed")
    _require(shutil.which("curl") is not None, "curl is not installed")
    _require((REPO / "node_modules" / "@tus" / "server").exists(), "npm packages not installed")
    for module in ("tuspyserver", "matplotlib"):
        _require(
            importlib.util.find_spec(module) is not None,
            f"{module} missing: pip install -e '.[bench]'",
        )

    results = tmp_path / "results"
    command = [
        sys.executable, "-m", "bench", "--quick",
        "--size", "6MiB", "--concurrency", "2,3", "--concurrent-size", "6MiB",
        "--small-count", "6", "--leak-count", "4",
        "--results", str(results), "--workdir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    output = done.stdout + "\n" + done.stderr
    rows = _rows(done.stdout)

    assert {row[0] for row in rows} == SCENARIO_ROWS, output[-3000:]
    assert [row for row in rows if row[1] == "error"] == [], output[-3000:]
    assert [row for row in rows if row[7] == "FAIL"] == [], output[-3000:]
    assert done.returncode == 0, output[-3000:]
    # Every gateway row has a throughput and a measured peak RSS.
    for row in rows:
        if row[1].startswith("gateway"):
            assert row[4] != "-" and row[8].endswith("MiB"), row
    assert "| put | gateway curl -T 6 MiB |" in done.stdout
    # The put and tus rows say what the S3 server, the server and the client spent.
    cpu = {row[1]: row[9] for row in rows}
    assert cpu["gateway curl -T 6 MiB"].startswith("S3 "), cpu
    assert " · gateway " in cpu["gateway curl -T 6 MiB"], cpu
    assert " · client " in cpu["boto3 upload_file 6 MiB"], cpu
    assert "CPU-bound ratio" in next(r[10] for r in rows if r[1] == "gateway curl -T 6 MiB")
    assert "## Machine" in (results / "latest.md").read_text()
    assert (results / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The run removed its temp dir (test files, server data) on the way out.
    assert [p for p in tmp_path.iterdir() if p.name.startswith("gateway-bench-")] == []


def test_results_table_reads_back_for_the_chart() -> None:
    """`python -m bench.report` re-draws the chart from latest.md: the table must read back."""
    from bench.report import rows_from_markdown, table
    from bench.results import MiB, Row

    rows = [
        Row("put", "boto3 upload_file 1 GiB", 1 << 30, 6.5, note="baseline"),
        Row(
            "put", "gateway curl -T 1 GiB", 1 << 30, 7.0, ratio=0.93, target=">= 0.9 x boto3",
            met=True, peak_rss=227 * MiB, note="median of 3 pairs",
        ),
        Row("tus", "gateway tus 1 GiB, chunks 64 MiB", 1 << 30, None, failures=1, note="broke"),
    ]  # fmt: skip
    back = rows_from_markdown("# Benchmark results\n\n" + table(rows) + "\n\ntext\n")
    assert [(r.scenario, r.case, r.bytes, r.note) for r in back] == [
        (r.scenario, r.case, r.bytes, r.note) for r in rows
    ]
    assert [r.seconds for r in back] == [6.5, 7.0, None]
    assert [r.ratio for r in back] == [None, 0.93, None]
    assert [r.status for r in back] == ["", "ok", "FAIL"]
    assert back[1].peak_rss == 227 * MiB
