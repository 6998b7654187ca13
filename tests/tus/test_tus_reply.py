"""The tus dialect of catalogue errors: tus clients' statuses, and the tus headers on every one."""

from __future__ import annotations

import pytest

from gateway.errors import Code, GatewayError
from gateway.http.tus_reply import BASE_HEADERS, tus_error


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (Code.CONFLICT, 423),  # a lease another request holds: tus clients retry a 423
        (Code.LINK_EXPIRED, 410),
        (Code.OFFSET_MISMATCH, 409),
        (Code.CHECKSUM_MISMATCH, 460),
        (Code.TUS_VERSION, 412),
        (Code.STORAGE_UNAVAILABLE, 503),
        (Code.INTERNAL, 500),
    ],
)
def test_statuses(code: Code, status: int) -> None:
    spoken = tus_error(GatewayError(code, "why"))
    assert (spoken.code, spoken.status, spoken.message) == (code, status, "why")


def test_the_errors_own_headers_and_status_stay_and_the_tus_headers_join_them() -> None:
    error = GatewayError(
        Code.BAD_REQUEST, "Method not allowed.", status=405, headers={"Allow": "POST"}
    )
    spoken = tus_error(error)
    assert spoken.status == 405
    assert spoken.headers == {"Allow": "POST", **BASE_HEADERS}
    assert spoken.headers["Tus-Resumable"] == "1.0.0"
    assert error.headers == {"Allow": "POST"}  # the original is left as it was
