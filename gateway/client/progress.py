"""The progress bars on stderr: one per file, the sum of what its streams have sent."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def progress_bar(console: Console) -> Progress:
    """Name, bar, bytes, speed and time left (also used by ``gateway download``)."""
    return Progress(
        TextColumn("[bold]{task.description}", justify="left"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextlib.contextmanager
def shown(progress: Progress | None, err: Console) -> Iterator[None]:
    """Show the bars for the block; Ctrl-C stops at once, leaving every file resumable."""
    if progress is not None:
        progress.start()
    try:
        yield
    except KeyboardInterrupt:
        if progress is not None:
            progress.stop()
        err.print("interrupted; run the same command again to resume")
        os._exit(130)
    finally:
        if progress is not None:
            progress.stop()


class Meter:
    """One progress bar per file: the sum of what each of its streams has sent.

    With no ``progress`` (``--quiet``) every call returns at once."""

    def __init__(self, progress: Progress | None, name: str, size: int) -> None:
        self.progress = progress
        self.name = name
        self.task: TaskID | None = None if progress is None else progress.add_task(name, total=size)
        self.sent: dict[int, int] = {}
        self.lock = threading.Lock()

    def at(self, stream: int, sent: int) -> None:
        """Stream ``stream`` has sent ``sent`` bytes of its range."""
        if self.progress is None or self.task is None:
            return
        with self.lock:
            self.sent[stream] = sent
            total = sum(self.sent.values())
            self.progress.update(self.task, completed=total)

    def note(self, text: str = "") -> None:
        """Say what the file is waiting for next to its name ("" to clear it)."""
        if self.progress is not None and self.task is not None:
            shown = f"{self.name} ({text})" if text else self.name
            self.progress.update(self.task, description=shown)
