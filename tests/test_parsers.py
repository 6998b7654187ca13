"""The strict parsers behind settings: each takes its forms and refuses the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway import parsers


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (parsers.boolean, "TRUE", True),
        (parsers.boolean, "off", False),
        (parsers.choice("file", "s3"), "s3", "s3"),
        (parsers.http_url, "https://acme.zendesk.com/", "https://acme.zendesk.com"),
        (parsers.positive, "8", 8),
        (parsers.wait, "0", 0),
        (parsers.wait, "30s", 30),
        (parsers.desk_id, "4", "4"),
        (parsers.table, "u_support_case", "u_support_case"),
        (parsers.comma_list, " a, b,,c ", ("a", "b", "c")),
    ],
)
def test_accepted(parse: Callable[[str], Any], text: str, value: Any) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parsers.boolean, "maybe"),
        (parsers.choice("file", "s3"), "S3"),
        (parsers.http_url, "ftp://example.com"),
        (parsers.http_url, "https://"),
        (parsers.positive, "0"),
        (parsers.positive, "-3"),
        (parsers.wait, "soon"),
        (parsers.desk_id, "SUP"),
        (parsers.desk_id, "٤"),  # a digit, but not an ASCII one
        (parsers.table, "Incident"),
        (parsers.table, "drop table;"),
    ],
)
def test_refused(parse: Callable[[str], Any], text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost:8000", True),
        ("http://127.0.0.5", True),
        ("http://[::1]:8000", True),
        ("https://uploads.example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert parsers.is_loopback_url(url) is loopback
