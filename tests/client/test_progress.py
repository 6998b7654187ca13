"""The progress bar of one file: the sum of its streams, and a note next to its name."""

from __future__ import annotations

import io

from rich.console import Console

from gateway.client.progress import Meter, progress_bar


def test_meter_sums_the_streams_and_shows_a_note() -> None:
    progress = progress_bar(Console(file=io.StringIO(), force_terminal=False))
    meter = Meter(progress, "big.bin", 100)
    assert meter.task is not None
    meter.at(0, 10)
    meter.at(1, 30)
    meter.at(0, 25)  # a stream reports what it has sent so far, not an increment
    task = progress.tasks[0]
    assert task.completed == 55 and task.total == 100
    meter.note("assembling")
    assert task.description == "big.bin (assembling)"
    meter.note()
    assert task.description == "big.bin"


def test_quiet_meter_does_nothing() -> None:
    meter = Meter(None, "f", 10)
    meter.at(0, 5)
    meter.note("x")
    assert meter.task is None and meter.sent == {}
