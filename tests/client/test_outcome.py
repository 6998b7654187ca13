"""The final line per file that scripts parse, and the failure it comes from."""

from __future__ import annotations

from gateway.client.outcome import Failed, Result


def test_result_lines() -> None:
    assert Result("a b.bin", True, "ab" * 32, 12).line() == f"OK {'ab' * 32} 12 a b.bin"
    assert Result("x", False, reason="http-413").line() == "FAILED http-413 x"


def test_failed_keeps_its_reason_and_message() -> None:
    plain = Failed("network")
    assert plain.reason == "network" and str(plain) == "network"
    told = Failed("file-changed", "the file shrank while uploading")
    assert told.reason == "file-changed" and str(told) == "the file shrank while uploading"
