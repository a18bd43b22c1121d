"""One store has at most one open runtime per process, whoever asks for it first.

DuckDB shares one database between the connections of a process, so two runtimes on one
file do not fail to open: they both write, and a run both of them resume has its event
checkpointed twice. These tests race threads to the first use of a store.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable, Iterator

import pytest

import evkit
from evkit import workflow
from evkit.runtime import Runtime

THREADS = 8


@workflow.step
def add(a: int, b: int) -> int:
    return a + b


@workflow.step
def after(event: object) -> object:
    return event


def _waiting_run() -> evkit.StepNode:
    return after.step(workflow.wait_for_event(workflow.ManualListener, key="go"))


@pytest.fixture
def default_store(store_path: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """No runtime yet, and the default store is ``store_path``: the first evkit call of
    any thread makes the runtime. The working directory is empty so that a stray
    ``./evkit.duckdb`` would show."""
    workflow.shutdown()
    monkeypatch.setenv("EVKIT_STORAGE", store_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield store_path
    workflow.shutdown()
    assert list(cwd.iterdir()) == []


def _race(work: Callable[[int], object]) -> tuple[list[object], list[BaseException]]:
    """Run ``work(i)`` in THREADS threads released together; their results and errors."""
    barrier = threading.Barrier(THREADS)
    results: list[object] = []
    errors: list[BaseException] = []

    def target(i: int) -> None:
        barrier.wait()
        try:
            results.append(work(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def _close_all(handles: list[workflow.RunHandle]) -> set[Runtime]:
    """The runtimes behind ``handles``, each closed (a losing runtime would stay open)."""
    runtimes = {h._runtime for h in handles}
    for runtime in runtimes:
        runtime.close()
    return runtimes


@pytest.mark.slow
def test_threads_racing_to_first_use_of_a_fresh_store_share_one_runtime(default_store: str) -> None:
    results, errors = _race(lambda i: workflow.run_async(add.step(i, 100), workflow_id=f"r{i}"))
    handles = [h for h in results if isinstance(h, workflow.RunHandle)]
    try:
        assert errors == []
        assert sorted(h.result(timeout=30) for h in handles) == [i + 100 for i in range(THREADS)]  # type: ignore[type-var]
        assert sorted(workflow.list_all()) == sorted((f"r{i}", workflow.SUCCESSFUL) for i in range(THREADS))
    finally:
        runtimes = _close_all(handles)
    assert len(runtimes) == 1


@pytest.mark.slow
def test_threads_racing_to_resume_a_waiting_run_checkpoint_its_event_once(default_store: str) -> None:
    # A run left waiting by an earlier runtime, and an event sent to it meanwhile.
    with workflow.init(storage=default_store, loop="thread"):
        workflow.run_async(_waiting_run(), workflow_id="w")
    workflow.shutdown()
    with workflow.init(storage=default_store, loop="thread"):
        workflow.send_event("w", "go", "kept")
    workflow.shutdown()

    def resume_or_send(i: int) -> object:
        if i % 2:
            return workflow.send_event("w", "go", f"late {i}")
        return workflow.resume_async("w")

    results, errors = _race(resume_or_send)
    handles = [h for h in results if isinstance(h, workflow.RunHandle)]
    try:
        # The first start wins; the others find the run running (or already done).
        assert all(isinstance(e, evkit.RunStateError) for e in errors), errors
        assert len(handles) + len(errors) == THREADS // 2
        # The oldest event goes to the wait; the late ones stay in the inbox.
        assert [h.result(timeout=30) for h in handles] == ["kept"] * len(handles)
        # A resume runs the stored code (a copy of `after`): the store counts its attempts.
        assert evkit.sql("SELECT step_id, attempts FROM steps WHERE workflow_id = 'w'").fetchall() == [
            ("after", 1)
        ]
        checkpoints = evkit.sql("SELECT count(*) FROM event_checkpoint_log WHERE workflow_id = 'w'")
        assert checkpoints.fetchall() == [(1,)]
        undelivered = evkit.sql("SELECT count(*) FROM inbox_events WHERE delivered_to IS NULL")
        assert undelivered.fetchall() == [(THREADS // 2,)]
    finally:
        runtimes = _close_all(handles)
    assert len(runtimes) == 1


@pytest.mark.slow
def test_explicit_inits_of_one_store_racing_leave_one_runtime_open(store_path: str) -> None:
    workflow.shutdown()
    clock = evkit.FakeClock()
    runtimes, errors = _race(
        lambda i: workflow.init(storage=store_path, loop="thread", clock=clock if i % 2 else None)
    )
    try:
        assert errors == []
        open_ones = {r for r in runtimes if isinstance(r, Runtime) and not r.closed}
        assert open_ones == {workflow.get_runtime()}
    finally:
        for runtime in runtimes:
            assert isinstance(runtime, Runtime)
            runtime.close()
        workflow.shutdown()


def test_a_second_runtime_on_an_open_store_is_refused_until_the_first_closes(store_path: str) -> None:
    first = Runtime(store_path, loop="thread")
    try:
        with pytest.raises(
            evkit.StoreLockedError,
            match=rf"^Store '{store_path}' is already open in this process \(<evkit.Runtime ",
        ):
            Runtime(os.path.join(os.path.dirname(store_path), ".", "evkit.duckdb"), loop="thread")
    finally:
        first.close()
    with Runtime(store_path, loop="thread") as second:
        assert not second.closed


@pytest.mark.slow
def test_init_on_a_store_an_explicit_runtime_holds_is_refused_and_changes_nothing(
    store_path: str, tmp_path: pathlib.Path
) -> None:
    current = workflow.init(storage=str(tmp_path / "current.duckdb"), loop="thread")
    try:
        with Runtime(store_path, loop="thread"), pytest.raises(evkit.StoreLockedError, match="already open"):
            workflow.init(storage=store_path, loop="thread")
        assert workflow.get_runtime() is current
        assert not current.closed
    finally:
        workflow.shutdown()
