"""FileListener on real files in tmp_path: new files, settling (a slow writer, a rename into
place), existing files, distinct files for parallel waits, once per run across a restart,
and the watcher's thread stopping with a cancelled wait."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import Callable

import pytest
import watchfiles._rust_notify  # noqa: F401 - evkit imports it on first use, on the loop

import evkit
from evkit import workflow
from evkit.listeners.files import FileRecord, FileWatchers, _Watcher


@workflow.step
def names(*records: FileRecord) -> list[str]:
    return sorted(record.name for record in records)


@workflow.step
def collect_files(record: FileRecord, taken: list[str], left: int, pattern: str) -> object:
    """A loop that takes files one by one, every file once."""
    taken = [*taken, record.name]
    if left == 1:
        return taken
    return collect_files.step(
        workflow.wait_for_event(workflow.FileListener, pattern, existing=True, settle_seconds=0),
        taken,
        left - 1,
        pattern,
    )


def wait_for_file(pattern: pathlib.Path | str, **options: object) -> evkit.StepNode:
    options.setdefault("settle_seconds", 0)
    return workflow.wait_for_event(workflow.FileListener, str(pattern), **options)


def watchers(runtime: evkit.Runtime, workflow_id: str) -> list[_Watcher]:
    service = runtime.engine().services.get(FileWatchers)
    return service.watchers_of(workflow_id) if service is not None else []


async def until(condition: Callable[[], bool], timeout_seconds: float = 10.0) -> None:
    """Wait (on the loop, yielding each time) until ``condition()`` holds."""
    async with asyncio.timeout(timeout_seconds):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.005)


async def watching(runtime: evkit.Runtime, workflow_id: str, count: int = 1) -> None:
    """Until the run's waits are registered with their watcher, after its directory scan."""
    await until(lambda: sum(w.waiting for w in watchers(runtime, workflow_id)) >= count)


async def write(path: pathlib.Path, data: bytes) -> None:
    await asyncio.to_thread(path.write_bytes, data)


async def until_rows(query: str, expected: set[tuple[object, ...]]) -> None:
    async with asyncio.timeout(10):
        while set(await rows(query)) != expected:  # noqa: ASYNC110 - the store has no events to wait on
            await asyncio.sleep(0.01)


async def rows(query: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def test_a_new_file_is_delivered_with_its_path_size_and_mtime(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv"), workflow_id="new")
    await watching(aruntime, "new")
    await write(tmp_path / "notes.txt", b"not a match")
    await write(tmp_path / "a.csv", b"x,y\n1,2\n")
    record = await handle
    stat = await asyncio.to_thread((tmp_path / "a.csv").stat)
    assert record == FileRecord(path=str(tmp_path / "a.csv"), size=8, mtime_ns=stat.st_mtime_ns)
    assert record.mtime.timestamp() == pytest.approx(stat.st_mtime)
    [(source_id,)] = await rows("SELECT source_id FROM events")
    assert source_id == f"file:new:{tmp_path / 'a.csv'}:8:{stat.st_mtime_ns}"


async def test_files_there_before_the_wait_are_delivered_only_with_existing_true(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    await write(tmp_path / "old.csv", b"old")
    old = await asyncio.to_thread((tmp_path / "old.csv").stat)
    assert await workflow.run_async(wait_for_file(tmp_path / "*.csv", existing=True), workflow_id="all") == (
        FileRecord(path=str(tmp_path / "old.csv"), size=3, mtime_ns=old.st_mtime_ns)
    )
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv"), workflow_id="only-new")
    await watching(aruntime, "only-new")
    await write(tmp_path / "new.csv", b"new")
    assert (await handle).name == "new.csv"


async def test_parallel_waits_of_a_run_on_one_pattern_get_different_files(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    handle = workflow.run_async(
        names.step(*(wait_for_file(tmp_path / "*.csv") for _ in range(3))), workflow_id="parallel"
    )
    await watching(aruntime, "parallel", 3)
    for name in ("a.csv", "b.csv", "c.csv"):
        await write(tmp_path / name, name.encode())
    assert await handle == ["a.csv", "b.csv", "c.csv"]


async def test_each_run_gets_each_file_once_and_other_runs_get_it_too(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    await write(tmp_path / "a.csv", b"a")
    await write(tmp_path / "b.csv", b"b")
    first = await collect_files.step(
        wait_for_file(tmp_path / "*.csv", existing=True), [], 2, str(tmp_path / "*.csv")
    ).run_async(workflow_id="first")
    assert sorted(first) == ["a.csv", "b.csv"]
    second = await wait_for_file(tmp_path / "*.csv", existing=True).run_async(workflow_id="second")
    assert second.name in {"a.csv", "b.csv"}


@pytest.mark.slow
async def test_a_file_still_being_written_is_delivered_once_it_settles(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / "big.csv"
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv", settle_seconds=0.2), workflow_id="slow")
    await watching(aruntime, "slow")
    [watcher] = watchers(aruntime, "slow")
    out = await asyncio.to_thread(target.open, "ab", buffering=0)
    with out:
        for chunk in range(4):
            await asyncio.to_thread(out.write, b"%d" % chunk * 1000)
            # The next chunk comes once the watcher saw this one: the writer pauses, but for
            # less than settle_seconds, so the file must not be delivered half written.
            await until(lambda c=chunk: watcher.settling_size(str(target)) == (c + 1) * 1000)
            assert not handle.done()
    record = await handle
    assert record.size == 4000
    assert record.mtime_ns == (await asyncio.to_thread(target.stat)).st_mtime_ns


async def test_a_file_renamed_into_place_is_delivered_whole_and_its_temporary_name_never(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv"), workflow_id="rename")
    await watching(aruntime, "rename")
    partial = tmp_path / ".report.csv.part"  # a dot file: `*.csv` does not match it
    out = await asyncio.to_thread(partial.open, "wb", buffering=0)
    with out:
        await asyncio.to_thread(out.write, b"half")
        await asyncio.to_thread(out.write, b" and the rest")
    await asyncio.to_thread(os.rename, partial, tmp_path / "report.csv")
    record = await handle
    assert (record.name, record.size) == ("report.csv", 17)


@pytest.mark.slow
async def test_a_file_delivered_before_a_restart_is_not_delivered_again_after_the_resume(
    store_path: str, tmp_path: pathlib.Path
) -> None:
    inbox = tmp_path / "inbox"
    await asyncio.to_thread(inbox.mkdir)
    await write(inbox / "a.csv", b"a")
    pattern = str(inbox / "*.csv")
    runtime = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        workflow.run_async(
            collect_files.step(wait_for_file(pattern, existing=True), [], 2, pattern), workflow_id="loop"
        )
        # The first wait takes a.csv; then the loop's second wait waits (same watcher).
        await until_rows(
            "SELECT state FROM events WHERE workflow_id = 'loop'", {("committed",), ("waiting",)}
        )
        await watching(runtime, "loop")
    finally:
        await runtime.aclose()
    runtime = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        handle = workflow.resume_async("loop")
        await watching(runtime, "loop")
        await write(inbox / "b.csv", b"b")
        assert await handle == ["a.csv", "b.csv"]  # a.csv is still there, and not taken again
        assert await rows("SELECT count(*) FROM events WHERE workflow_id = 'loop'") == [(2,)]
    finally:
        await runtime.aclose()


async def test_cancelling_the_wait_stops_the_watcher_thread(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv"), workflow_id="cancel")
    await watching(aruntime, "cancel")
    [watcher] = watchers(aruntime, "cancel")
    assert watcher.thread is not None
    assert watcher.thread.is_alive()
    await handle.cancel_async()
    await asyncio.to_thread(watcher.thread.join, 5)
    assert not watcher.thread.is_alive()
    assert watchers(aruntime, "cancel") == []


async def test_a_missing_directory_fails_the_wait_with_a_message_naming_it(
    aruntime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as failure:
        await wait_for_file(tmp_path / "nowhere" / "*.csv").run_async(workflow_id="missing")
    assert f"FileListener: directory '{tmp_path / 'nowhere'}' does not exist" in str(failure.value)


@pytest.mark.slow
async def test_a_file_that_arrived_while_the_kernel_was_down_counts_as_new_after_the_resume(
    store_path: str, tmp_path: pathlib.Path
) -> None:
    await write(tmp_path / "before.csv", b"was there before the wait")
    runtime = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        workflow.run_async(wait_for_file(tmp_path / "*.csv"), workflow_id="down")
        await watching(runtime, "down")
    finally:
        await runtime.aclose()
    await write(tmp_path / "during.csv", b"came while nothing watched")
    runtime = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        # "New" means new since the wait first started (kept in the store), not since
        # the resumed wait started: during.csv is new, before.csv is not.
        assert (await workflow.resume_async("down")).name == "during.csv"
    finally:
        await runtime.aclose()


def test_a_file_wait_works_when_the_engine_runs_on_its_own_thread(
    runtime: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    # existing=True: the file may be written before or after the wait starts.
    handle = workflow.run_async(wait_for_file(tmp_path / "*.csv", existing=True), workflow_id="threaded")
    (tmp_path / "t.csv").write_bytes(b"t")
    assert handle.result(timeout=10).name == "t.csv"
