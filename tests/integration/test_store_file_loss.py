"""The store's file lost under a running engine: deleted, or on a disk that filled up.

Either way no event of the failed batch may be committed at its source, and the error
names the file and what happened to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

import evkit
from evkit import workflow
from evkit.store.writer import Execute, StoreWriter

pytestmark = pytest.mark.slow  # each opens a store (and most mount a disk): 0.2 to 0.4 s


class Gate:
    """What the gated listener waits for, and the events it committed at their source."""

    open: ClassVar[threading.Event] = threading.Event()
    committed: ClassVar[list[object]] = []


@pytest.fixture(autouse=True)
def _fresh_gate() -> None:
    Gate.open = threading.Event()
    Gate.committed = []


class GatedListener(workflow.EventListener):
    """Delivers ``payload`` once the test opens the gate (the test first breaks the store)."""

    async def poll_for_event(self, payload: object) -> object:
        await asyncio.to_thread(Gate.open.wait)
        return payload

    async def event_checkpointed(self, event: object) -> None:
        Gate.committed.append(event)


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> str:
    """The store in a directory of its own, which the test deletes."""
    (tmp_path / "store").mkdir()
    return str(tmp_path / "store" / "evkit.duckdb")


def test_deleting_the_store_directory_fails_the_batch_before_any_commit_at_a_source(
    runtime: evkit.Runtime, store_path: str
) -> None:
    waits = [workflow.wait_for_event(GatedListener, i) for i in range(3)]
    handle = workflow.run_async(collect.step(*waits), workflow_id="gone")
    shutil.rmtree(os.path.dirname(store_path))
    Gate.open.set()
    with pytest.raises(evkit.StoreError) as info:
        handle.result(timeout=30)
    assert Gate.committed == []
    assert handle.status is workflow.FAILED
    assert info.value.path == store_path
    assert f"Store {store_path!r} is no longer the file evkit opened: it is gone (No such file" in str(
        info.value
    )


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 2 MB tmpfs of the test's own, so the test can fill it (needs root: mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        workflow.shutdown()  # the store's files must be closed before the unmount
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def _fill(directory: pathlib.Path) -> pathlib.Path:
    """Write a file into ``directory`` until its disk is full; return the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (b"\0" * 65536, b"\0"):  # then the last few bytes of room, one at a time
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free == 0
    return filler


def test_commit_on_a_full_disk_names_the_file_and_commits_nothing_at_a_source(
    small_disk: pathlib.Path,
) -> None:
    store = str(small_disk / "evkit.duckdb")
    workflow.init(storage=store, loop="thread")
    # Bigger than any slack in the write-ahead log's last page: the checkpoint must grow it.
    payload = "x" * 200_000
    handle = workflow.run_async(
        collect.step(workflow.wait_for_event(GatedListener, payload)), workflow_id="full"
    )
    _fill(small_disk)
    Gate.open.set()
    with pytest.raises(evkit.StoreError) as info:
        handle.result(timeout=30)
    assert Gate.committed == []
    assert handle.status is workflow.FAILED
    message = str(info.value)
    assert f"Store {store!r}: committing a batch of writes failed: the disk holding it is full" in message
    assert f'Could not write file "{store}.wal": No space left on device' in message
    assert "no transaction is active" not in message


def test_creating_a_store_on_a_full_disk_leaves_no_file_and_works_once_there_is_room(
    small_disk: pathlib.Path,
) -> None:
    store = str(small_disk / "evkit.duckdb")
    filler = _fill(small_disk)
    with pytest.raises(
        evkit.StoreError, match=r"^Store '.*': opening the store failed: the disk holding it is full"
    ):
        workflow.init(storage=store, loop="thread")
    assert sorted(os.listdir(small_disk)) == ["filler"]
    filler.unlink()
    workflow.init(storage=store, loop="thread")
    assert workflow.list_all() == []


def test_an_empty_file_at_the_store_path_becomes_a_new_store(store_path: str) -> None:
    # What evkit 0.x left behind when a full disk stopped it creating a store.
    pathlib.Path(store_path).touch()
    workflow.init(storage=store_path, loop="thread")
    try:
        assert workflow.list_all() == []
    finally:
        workflow.shutdown()


def test_failed_commit_of_a_transaction_reports_the_full_disk_not_the_refused_rollback(
    small_disk: pathlib.Path,
) -> None:
    store = str(small_disk / "evkit.duckdb")
    big_row = ("w", "k", "e1", 0.0, b"x" * 200_000, '"x"', "notebook")
    with StoreWriter(store) as writer:
        _fill(small_disk)
        # Two ops: one transaction with BEGIN and COMMIT (a lone statement has none).
        ops = [{"inbox": [big_row]}, Execute("DELETE FROM inbox WHERE event_id = ?", ["none"])]
        with pytest.raises(evkit.StoreError) as info:
            writer.write(ops).result()
    message = str(info.value)
    assert message.startswith(
        f"Store {store!r}: committing a batch of writes failed: the disk holding it is full"
    )
    assert "No space left on device" in message
    assert "no transaction is active" not in message
