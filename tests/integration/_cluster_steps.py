"""Steps, a listener and helpers shared by the Dask and Ray executor tests.

The module is pickled by value (cloudpickle), so cluster workers run these steps without
importing anything from tests/.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import cloudpickle
import psutil

import evkit
from evkit import workflow

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@workflow.step
def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@workflow.step
def total(pairs: list[tuple[int, int]], bonus: int) -> dict[str, object]:
    return {"sum": sum(value for value, _ in pairs) + bonus, "pids": sorted({pid for _, pid in pairs})}


@workflow.step(max_retries=2, retry_backoff_seconds=0.01)
def die_once(marker: str) -> str:
    """Kills its own worker process on the first attempt; the retry finds the marker."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived in {os.getpid()}"


@workflow.step
def block(started: str, release: str, done: str) -> str:
    """Writes its pid, blocks until `release` exists (30 s at most), then writes `done`."""
    with open(started, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.time() + 30
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.02)
    with open(done, "w") as f:
        f.write("done")
    return "finished"


@workflow.step
def make_lock() -> object:
    return threading.Lock()


@workflow.step
def describe(value: object) -> str:
    return repr(value)


@workflow.step
def pid() -> int:
    return os.getpid()


class RecordingListener(workflow.EventListener):
    """A ManualListener that records where its poll runs (it must be the kernel's loop)."""

    seen: ClassVar[list[tuple[int, int]]] = []

    def __init__(self) -> None:
        self._inner = workflow.ManualListener()

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        RecordingListener.seen.append((os.getpid(), threading.get_ident()))
        return await self._inner.poll_for_event(key)

    def source_id(self, event: object) -> str | None:
        return self._inner.source_id(event)


def fan_out_with_a_wait(n: int) -> object:
    """`total` of `n` squares plus an event sent by hand (key "bonus")."""
    return total.step([square.step(i) for i in range(n)], workflow.wait_for_event(RecordingListener, "bonus"))


async def until(
    condition: Callable[[], bool], *, timeout_seconds: float = 30.0, off_loop: bool = False
) -> None:
    """Wait until `condition()` holds; `off_loop` evaluates it in a thread (file checks)."""
    async with asyncio.timeout(timeout_seconds):
        while not (await asyncio.to_thread(condition) if off_loop else condition()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def touch(path: str) -> None:
    """Create an empty file (run it in a thread from async code)."""
    pathlib.Path(path).touch()


async def rows(query: str, *params: object) -> list[tuple[object, ...]]:
    """Run SQL on the store from a worker thread (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query, list(params)).fetchall())


async def step_log(workflow_id: str, step_id: str) -> list[tuple[object, ...]]:
    """(state, attempt, error prefix) of each row the store has for a step, in order."""
    found = await rows(
        "SELECT state, attempt, error_text FROM step_log WHERE workflow_id = ? AND step_id = ? ORDER BY seq",
        workflow_id,
        step_id,
    )
    return [(state, attempt, str(error).split(":")[0] if error else None) for state, attempt, error in found]


async def wait_for_started(started: str) -> int:
    """The pid `block` wrote once it started on a worker."""
    await until(lambda: os.path.exists(started) and os.path.getsize(started) > 0, off_loop=True)
    return int(await asyncio.to_thread(pathlib.Path(started).read_text))


def pid_gone(pid: int) -> bool:
    """True once no live process has this pid (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def check_a_dying_worker_is_retried(tmp_path: os.PathLike[str], expected_error: str) -> None:
    """Run ``die_once``: its first worker dies, the retry succeeds, the store has each attempt.

    ``expected_error`` is how the step's stored error must start (it names the engine).
    """
    marker = os.path.join(os.fspath(tmp_path), "died")
    result = await die_once.step(marker).run_async(workflow_id="kill")
    assert isinstance(result, str)
    assert result.startswith("survived in ")
    assert await step_log("kill", "die_once") == [
        ("running", 1, None),
        ("failed", 1, "WorkerLostError"),
        ("running", 2, None),
        ("succeeded", 2, None),
    ]
    error = (await rows("SELECT error FROM steps WHERE step_id = 'die_once'"))[0][0]
    assert isinstance(error, str)
    assert error.startswith(expected_error)
