"""Starting and always stopping the processes a benchmark run needs.

Everything started goes on one :class:`Cleanup` stack, which the run unwinds
in a ``finally``; SIGTERM is turned into KeyboardInterrupt so a terminated
run unwinds the same way as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import httpx


class Cleanup:
    """Callbacks run last-in first-out, each guarded so one failure does not stop the rest."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], object]] = []

    def push(self, callback: Callable[[], object]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        while self._callbacks:
            callback = self._callbacks.pop()
            try:
                callback()
            except Exception as exc:  # keep stopping the others
                print(f"cleanup: {exc!r}")


def interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server child process in its own process group, with its log in a file."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_http(
        self, url: str, timeout: float = 30.0, ok: Callable[[int], bool] | None = None
    ) -> None:
        """Wait until ``url`` answers (any status unless ``ok`` says otherwise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.request("OPTIONS", url, timeout=1.0)
                if ok is None or ok(response.status_code):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer at {url}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
