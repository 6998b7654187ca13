"""Which repeated request headers are refused (pure)."""

from __future__ import annotations

import pytest

from gateway.http.singletons import SINGLETONS, repeated


@pytest.mark.parametrize("name", SINGLETONS)
def test_any_singleton_twice_whatever_its_case(name: str) -> None:
    headers = [(b"host", b"a"), (name.encode(), b"1"), (b"accept", b"*/*"),
               (name.upper().encode(), b"1")]  # fmt: skip
    found = repeated(headers)
    assert found is not None and found.lower() == name


def test_other_headers_may_repeat() -> None:
    headers = [(b"accept", b"a"), (b"accept", b"b"), (b"cookie", b"x"), (b"cookie", b"y"),
               (b"upload-offset", b"0"), (b"content-length", b"10")]  # fmt: skip
    assert repeated(headers) is None


def test_names_are_given_in_canonical_case() -> None:
    assert repeated([(b"upload-offset", b"0"), (b"Upload-Offset", b"5")]) == "Upload-Offset"
