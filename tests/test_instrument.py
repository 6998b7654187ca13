"""The measuring wrappers: what counts as a storage error and what does not."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.instrument import InstrumentedStore
from gateway.metrics import Metrics
from gateway.store.base import PreconditionFailed
from gateway.store.file import FileStore
from tests.test_metrics import sample


def _errors(metrics: Metrics, op: str) -> float:
    """Errors counted for ``op``; 0 when the labelled counter never got a sample."""
    try:
        return sample(metrics.render()[0].decode(), "gateway_storage_errors_total", op=op)
    except AssertionError:
        return 0.0


def test_answers_and_clients_going_away_are_not_storage_errors(tmp_path: Path) -> None:
    metrics = Metrics()
    store = InstrumentedStore(FileStore(tmp_path), metrics)

    async def scenario() -> None:
        await store.put("big", os.urandom(3 * 1024 * 1024))
        await store.put("lock", b"x", if_absent=True)
        with pytest.raises(PreconditionFailed):
            await store.put("lock", b"y", if_absent=True)  # an answer: someone holds it
        with pytest.raises(KeyError):
            await store.list_parts("big", "0" * 32)  # an answer: no such upload
        reader = store.read("big")
        assert await reader.__anext__()
        await reader.aclose()  # a download the client stopped (GeneratorExit)
        slow = asyncio.ensure_future(store.get("big"))
        await asyncio.sleep(0)
        slow.cancel()  # a request cancelled mid-call
        with pytest.raises(asyncio.CancelledError):
            await slow

    asyncio.run(scenario())
    for op in ("put", "list_parts", "read", "get"):
        assert _errors(metrics, op) == 0, op


def test_a_failing_store_call_counts_as_an_error(tmp_path: Path) -> None:
    metrics = Metrics()
    store = InstrumentedStore(FileStore(tmp_path), metrics)

    async def scenario() -> None:
        await store.put("a/b", b"x")
        with pytest.raises(Exception):  # noqa: B017 - whatever the file store raises
            await store.put("a/b/c", b"y")  # "a/b" is an object, not a directory

    asyncio.run(scenario())
    assert _errors(metrics, "put") == 1
    assert (
        sample(metrics.render()[0].decode(), "gateway_storage_request_seconds_count", op="put") == 2
    )
