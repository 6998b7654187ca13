"""One row of the results table, and percentiles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.cpu import CpuUse

MiB = 1024 * 1024


@dataclass
class Row:
    """One measured case.

    ``ratio`` is this case's throughput over its baseline's (``None`` for
    baselines); ``target`` says what the ratio or memory must reach;
    ``met`` is whether it did (``None`` when there is no target). ``failures``
    counts uploads that did not complete correctly: a benchmark with failures
    is broken, one that misses a target only reports it. ``cpu`` is what each
    process spent during the timed run (S3 server, server under test, client).
    """

    scenario: str
    case: str
    bytes: int = 0
    seconds: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    peak_rss: int | None = None
    failures: int = 0
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    cpu: CpuUse | None = None

    @property
    def mib_s(self) -> float | None:
        if not self.seconds or not self.bytes:
            return None
        return self.bytes / MiB / self.seconds

    @property
    def status(self) -> str:
        if self.failures:
            return "FAIL"
        if self.met is False:
            return "miss"
        if self.met is True:
            return "ok"
        return ""


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 16 values is the largest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]
