"""Fixtures for the notebook-layer tests: widgets are built without a kernel (ipywidgets
falls back to a comm that sends nothing), runs are real."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(
    condition: Callable[[], object], *, timeout_seconds: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` (a widget trait written by the engine thread) until it holds."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def until() -> Callable[..., None]:
    """``until(lambda: ..., what=...)``: wait for something another thread does."""
    return wait_until
