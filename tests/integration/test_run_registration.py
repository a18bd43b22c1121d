"""``run_async`` fails at the call when the run cannot be registered in the store.

A handle is handed out only for a run that is durably in the store; a full filesystem
(a small tmpfs the test mounts: tests run as root, where file modes stop no write) makes
the registration's commit fail.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import threading
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow


@workflow.step
def echo(value: object) -> object:
    return value


@pytest.fixture
def small_filesystem(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 4 MiB tmpfs: room for a store, and easy to fill."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root and mount rights): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        workflow.shutdown()
        subprocess.run(["umount", str(mount_point)], check=True)


def _fill(directory: pathlib.Path) -> pathlib.Path:
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:  # ENOSPC: the filesystem is full
            pass
    return filler


@pytest.mark.slow
def test_run_async_raises_at_the_call_when_the_store_cannot_register_the_run(
    small_filesystem: pathlib.Path,
) -> None:
    store = str(small_filesystem / "evkit.duckdb")
    runtime = workflow.init(storage=store, loop="thread")
    filler = _fill(small_filesystem)
    # Its definition holds 64 KiB of argument: more than any slack left in the store's files.
    node = echo.step(b"x" * 65536)
    with pytest.raises(
        evkit.StoreError,
        match=rf"^Run 'full' could not be registered in store '{store}', so it was not started \(nothing "
        rf"of it was stored\): Store '{store}': .* failed: the disk holding it is full",
    ) as raised:
        workflow.run_async(node, workflow_id="full")
    assert raised.value.path == store
    assert isinstance(raised.value.__cause__, evkit.StoreError)
    # Nothing holds the id (the starter may try again), and the runtime stays open.
    assert runtime.engine().active("full") is None
    filler.unlink()
    assert not runtime.closed
    assert workflow.get_runtime() is runtime


@pytest.mark.slow
async def test_run_async_on_the_engine_loop_hands_the_registration_error_to_the_handle_and_the_log(
    small_filesystem: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # On the engine's own loop (a notebook cell) run_async cannot wait for the store.
    store = str(small_filesystem / "evkit.duckdb")
    runtime = await asyncio.to_thread(workflow.init, storage=store)
    try:
        filler = await asyncio.to_thread(_fill, small_filesystem)
        handle = workflow.run_async(echo.step(b"x" * 65536), workflow_id="full")
        with pytest.raises(evkit.StoreError):
            await handle
        assert handle.status is workflow.FAILED
        assert (
            f"evkit run 'full' could not be registered in store '{store}', so it was not started: "
            in caplog.text
        )
        await asyncio.to_thread(filler.unlink)
    finally:
        await runtime.aclose()


def test_run_async_raises_at_the_call_when_the_definition_cannot_be_stored(runtime: evkit.Runtime) -> None:
    with pytest.raises(
        TypeError,
        match=rf"^Run 'locked' could not be registered in store '{runtime.storage}', so it was not started: "
        r"its definition cannot be stored \(cannot pickle a value of type FlatDag: .*lock",
    ):
        workflow.run_async(echo.step(threading.Lock()), workflow_id="locked")
    assert workflow.list_all() == []
    assert echo.step("fine").run(workflow_id="locked") == "fine"  # the id is free
