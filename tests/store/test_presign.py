"""The store seam's presign_get: S3 hands out a working, short-lived GET URL; a directory cannot."""

from __future__ import annotations

import httpx

from gateway.store import ObjectStore
from tests.store.conftest import StoreFactory, run


def test_presign_get(new_store: StoreFactory) -> None:
    async def scenario(store: ObjectStore) -> str | None:
        await store.put("files/p/data", b"presigned bytes")
        return await store.presign_get(
            "files/p/data",
            expires_in=60,
            disposition="attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt",
            content_type="text/plain",
        )

    store = new_store()
    url = run(store, scenario)
    if store.name == "file":
        assert url is None
        return
    assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"presigned bytes"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-disposition"].startswith('attachment; filename="a b.txt"')
    tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")
    assert httpx.get(tampered).status_code == 403
