"""The results table (stdout and ``latest.md``) and the throughput chart (PNG)."""

from __future__ import annotations

from pathlib import Path

from bench.results import MiB, Row

HEADER = [
    "scenario",
    "case",
    "bytes",
    "seconds",
    "MiB/s",
    "ratio",
    "target",
    "status",
    "peak RSS",
    "CPU s/GiB",
    "notes",
]


def _cells(row: Row) -> list[str]:
    return [
        row.scenario,
        row.case,
        str(row.bytes),
        f"{row.seconds:.2f}" if row.seconds else "-",
        f"{row.mib_s:.0f}" if row.mib_s else "-",
        f"{row.ratio:.2f}" if row.ratio is not None else "-",
        row.target or "-",
        row.status or "-",
        f"{row.peak_rss / MiB:.0f} MiB" if row.peak_rss else "-",
        row.cpu.text(row.bytes) if row.cpu else "-",
        (row.note or "").replace("|", "/").replace("\n", " "),
    ]


def table(rows: list[Row]) -> str:
    """A Markdown table: readable in a terminal and in the README as it is."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def markdown(
    rows: list[Row], machine: dict[str, str], command: str, finished: str, load_end: str
) -> str:
    out = [
        "# Benchmark results",
        "",
        f"`{command}`, finished {finished}.",
        "",
        table(rows),
        "",
        "Ratios are throughput over the baseline row's throughput in the same run: "
        "boto3 `upload_file` (put), the bare drain-and-hash Starlette app (ceiling), "
        "the faster peer tus server (tus). Peak RSS is the server process's VmHWM; "
        "for concurrency the limit is GATEWAY_BUFFER_MEMORY + 150 MiB. "
        "Status: ok = target met, miss = target not met, FAIL = uploads failed.",
        "",
        "CPU s/GiB is what each process spent during the timed run, per GiB sent, from "
        "/proc (the S3 server, the server under test, and the client), their sum, and "
        "the share of all cores' time that sum is. Where the cores are busy in both "
        "runs, the ratio cannot beat the baseline's CPU sum over the gateway's: the "
        "gateway rows give that bound as 'CPU-bound ratio'.",
        "",
        "![throughput](throughput.png)",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += [f"- load average at end: {load_end}", ""]
    return "\n".join(out)


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.mib_s]
    if not shown:
        return
    colours = {
        "put": "#4c72b0",
        "ceiling": "#55a868",
        "tus": "#c44e52",
        "concurrency": "#8172b2",
        "small-files": "#ccb974",
        "leak": "#64b5cd",
        "profile": "#999999",
    }
    labels = [f"{row.scenario}: {row.case}" for row in shown]
    values = [row.mib_s or 0.0 for row in shown]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    bars = ax.barh(labels, values, color=[colours.get(r.scenario, "#777777") for r in shown])
    for bar, row in zip(bars, shown, strict=True):
        text = f"{row.mib_s:.0f}"
        if row.ratio is not None:
            text += f"  ({row.ratio:.2f}x)"
        ax.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text, va="center", fontsize=8
        )
    ax.invert_yaxis()
    ax.set_xlabel("MiB/s (aggregate for concurrency rows)")
    ax.set_title("Gateway throughput against its baselines (one run, one SeaweedFS)")
    ax.set_xlim(0, max(values) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rows_from_markdown(text: str) -> list[Row]:
    """The rows of a results table written by :func:`table` (for re-drawing its chart)."""
    rows: list[Row] = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| scenario |"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != len(HEADER):
            continue
        scenario, case, size, seconds, _, ratio, target, status, rss, _cpu, note = cells
        rows.append(
            Row(
                scenario,
                case,
                int(size) if size.isdigit() else 0,
                float(seconds) if seconds != "-" else None,
                ratio=float(ratio) if ratio != "-" else None,
                target="" if target == "-" else target,
                met={"ok": True, "miss": False}.get(status),
                peak_rss=int(float(rss.split()[0]) * MiB) if rss != "-" else None,
                failures=1 if status == "FAIL" else 0,
                note=note,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report [RESULTS_DIR]``: re-draw the chart from its latest.md."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0]) if args else Path(__file__).with_name("results")
    rows = rows_from_markdown((results / "latest.md").read_text())
    chart(rows, results / "throughput.png")
    print(f"{results / 'throughput.png'}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
