"""Store fixtures: every contract test runs against the file store and the S3 store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.store import ObjectStore
from gateway.store.file import FileStore
from gateway.store.s3 import S3Store
from tests.support.seaweed import SeaweedServer

T = TypeVar("T")
StoreFactory = Callable[..., ObjectStore]


def run(store: ObjectStore, scenario: Callable[[ObjectStore], Awaitable[T]]) -> T:
    """Run ``scenario(store)`` in a fresh event loop and close the store after."""

    async def main() -> T:
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture(params=["file", "s3"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of stores of one kind; S3 stores share one fresh bucket per test."""
    if request.param == "file":

        def make_file(prefix: str = "") -> ObjectStore:
            return FileStore(tmp_path / "store")

        return make_file

    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    bucket: str = request.getfixturevalue("s3_bucket")

    def make_s3(prefix: str = "") -> ObjectStore:
        return S3Store(bucket, prefix, client=seaweed.client())

    return make_s3
