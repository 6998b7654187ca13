"""Upload fixtures: every engine and lease test runs on the file store and on SeaweedFS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.store.base import ObjectStore
from gateway.store.file import FileStore
from gateway.store.s3 import S3Store
from tests.support.seaweed import SeaweedServer

StoreFactory = Callable[[], ObjectStore]


@pytest.fixture(params=["file", "s3"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes store instances over one place (one dir or one bucket), as replicas would."""
    if request.param == "file":
        return lambda: FileStore(tmp_path / "store")
    seaweed: SeaweedServer = request.getfixturevalue("seaweed")
    bucket: str = request.getfixturevalue("s3_bucket")
    return lambda: S3Store(bucket, client=seaweed.client())
