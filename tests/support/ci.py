"""Tools the tests need: absent on a workstation the test skips, absent in CI it fails.

CI installs every tool (`.ci/run`) and sets ``CI=true``, so a missing tool
there is a broken setup, never a quiet skip that hides an untested feature.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing_tool(message: str) -> NoReturn:
    """Fail in CI, skip elsewhere, saying what is missing and how to get it."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
