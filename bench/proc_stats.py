"""What /proc says about a process: peak and current RSS, open fds, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _status(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _kib(value: str) -> int:
    return int(value.split()[0]) * 1024


@dataclass(frozen=True)
class ProcStats:
    rss: int
    peak_rss: int
    fds: int
    threads: int


def proc_stats(pid: int) -> ProcStats:
    fields = _status(pid)
    return ProcStats(
        rss=_kib(fields["VmRSS"]),
        peak_rss=_kib(fields["VmHWM"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
    )


def peak_rss(pid: int) -> int | None:
    try:
        return proc_stats(pid).peak_rss
    except (FileNotFoundError, ProcessLookupError, KeyError):
        return None
