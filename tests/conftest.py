"""Fixtures shared by every test directory."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import evkit
from evkit import workflow


@pytest.fixture
def store_path(tmp_path: os.PathLike[str]) -> str:
    """A fresh store file per test: DuckDB lets one process hold a file, and a test must
    never see another test's runs."""
    return os.path.join(os.fspath(tmp_path), "evkit.duckdb")


@pytest.fixture
def runtime(store_path: str) -> Iterator[evkit.Runtime]:
    """A runtime on its own loop thread (sync tests). At teardown the store is closed and
    must have nothing left unwritten."""
    rt = workflow.init(storage=store_path, loop="thread")
    yield rt
    engine = rt._engine
    workflow.shutdown()
    assert rt.writer.closed
    if engine is not None:
        assert engine.queue.pending == 0, "writes were left in the queue at close"


@pytest.fixture
def fake_clock() -> evkit.FakeClock:
    """A clock only the test moves, so timers and timeouts need no real waiting."""
    return evkit.FakeClock()


@pytest.fixture
async def aruntime(store_path: str, fake_clock: evkit.FakeClock) -> AsyncIterator[evkit.Runtime]:
    """A runtime on the test's own running loop (the notebook-like default mode), with a
    fake clock. Closed at teardown without losing queued writes."""
    # Opening the file is blocking I/O: do it off the loop (the engine binds to this loop
    # at its first use, not at init).
    rt = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    yield rt
    await rt.aclose()
    assert rt.writer.closed


@pytest.fixture
def india_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is UTC+05:30 ("IST", no daylight saving), so a "local
    time" visibly differs from UTC whatever zone the machine running the tests is in."""
    monkeypatch.setenv("TZ", "IST-05:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
