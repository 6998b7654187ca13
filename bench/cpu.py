"""Who the machine's cores worked for during a timed run: CPU seconds per process.

On a machine with few cores the S3 server, the client and the server under
test share them, so a throughput ratio is bounded by how much CPU each side
costs. :func:`measure` reads ``utime + stime`` from ``/proc/PID/stat`` for
the long-running servers it is given, before and after the run, and the
bench process's reaped children (``RUSAGE_CHILDREN``) for the client, which
is a child that exits inside the run (curl, node, the boto3 process).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

GiB = 1024**3
CLIENT = "client"
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) ``pid`` has used, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name, field 2, is in parentheses and may hold spaces: split after it.
    fields = stat.rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS


def children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuUse:
    """CPU seconds by process name over one run, and the run's wall time."""

    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def busy(self) -> float:
        """The share of all cores' time that the measured processes used (0 to 1)."""
        if self.wall <= 0:
            return 0.0
        return self.total / (self.wall * self.cores)

    def per_gib(self, size: int) -> dict[str, float]:
        scale = GiB / size if size else 0.0
        return {name: value * scale for name, value in self.seconds.items()}

    def text(self, size: int) -> str:
        """``S3 10.2 · gateway 1.9 · client 0.4 = 12.5; 97% of 2 cores`` (CPU s per GiB)."""
        if not self.seconds:
            return "-"
        parts = " · ".join(f"{name} {value:.1f}" for name, value in self.per_gib(size).items())
        total = self.total * (GiB / size if size else 0.0)
        return f"{parts} = {total:.1f}; {self.busy:.0%} of {self.cores} cores"


def bound_ratio(base: CpuUse | None, other: CpuUse | None) -> float | None:
    """The throughput ratio ``other`` over ``base`` if both kept every core busy.

    Same bytes on both sides, so the run that costs less CPU in all can be at
    most this much faster; a run that leaves cores idle does worse than its bound.
    """
    if base is None or other is None or not base.total or not other.total:
        return None
    return base.total / other.total


@contextlib.contextmanager
def measure(servers: dict[str, int], *, client: bool = True) -> Iterator[CpuUse]:
    """Measure the CPU of ``servers`` (name -> pid) and, with ``client``, of exiting children.

    The :class:`CpuUse` yielded is filled in when the block ends; a server that
    exits inside the block is left out (its last reading is lost with it).
    """
    use = CpuUse()
    before = {name: process_cpu(pid) for name, pid in servers.items()}
    children_before = children_cpu()
    started = time.perf_counter()
    try:
        yield use
    finally:
        use.wall = time.perf_counter() - started
        for name, pid in servers.items():
            start, end = before[name], process_cpu(pid)
            if start is not None and end is not None:
                use.seconds[name] = end - start
        if client:
            use.seconds[CLIENT] = children_cpu() - children_before
