"""A text summary of a py-spy ``--format raw`` profile (collapsed stacks).

Each line is ``frame;frame;...;frame COUNT``. Self time goes to the leaf
frame, inclusive time to every distinct function on the stack; line numbers
are dropped so one function is one entry.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def summarise(path: Path, top: int = 25) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if frames and frames[0].startswith(("thread ", "process ")):
            threads[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples\n"
    out = [f"{total} samples (active threads only)", "", "busiest threads:"]
    out += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in threads.most_common(8)]
    out += ["", "self time (leaf frames):"]
    out += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in self_time.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out) + "\n"
