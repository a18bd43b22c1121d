"""The lifecycle API from plain (synchronous) code, with the engine on its own thread."""

from __future__ import annotations

import asyncio
import gc
import pathlib
import threading

import pytest

import evkit
from evkit import workflow

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@workflow.step
def add(a: int, b: int) -> int:
    CALLS.append(f"add({a}, {b})")
    return a + b


@workflow.step(name="flaky", max_retries=2, retry_exceptions=True, retry_backoff_seconds=0)
def flaky(threshold: int) -> str:
    CALLS.append("flaky")
    if len(CALLS) <= threshold:
        raise RuntimeError(f"attempt {len(CALLS)} failed")
    return "ok"


@workflow.step(catch_exceptions=True)
def divide(a: int, b: int) -> float:
    return a / b


def test_run_returns_the_output_and_the_store_has_every_step(runtime: evkit.Runtime) -> None:
    assert add.step(add.step(1, 2), 3).run(workflow_id="sum") == 6
    assert workflow.get_status("sum") is workflow.SUCCESSFUL
    assert workflow.get_output("sum") == 6
    rows = evkit.sql("SELECT step_id, state, attempts, result FROM steps ORDER BY step_id").fetchall()
    assert rows == [("add", "succeeded", 1, "3"), ("add_1", "succeeded", 1, "6")]


def test_a_run_id_with_checkpoints_resumes_instead_of_starting_again(runtime: evkit.Runtime) -> None:
    node = add.step(1, 2)
    assert node.run(workflow_id="once") == 3
    assert node.run(workflow_id="once") == 3
    assert CALLS == ["add(1, 2)"]


def test_run_async_returns_a_handle_at_once_that_can_be_waited_on(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="go"), workflow_id="h")
    assert not handle.done()
    assert handle.status in (workflow.RUNNING, workflow.WAITING)
    with pytest.raises(TimeoutError, match=r"^Run 'h' did not finish within 0.01 s"):
        handle.result(timeout=0.01)
    workflow.send_event("h", "go", {"approved": True})
    assert handle.result(timeout=10) == {"approved": True}
    assert repr(handle) == "<evkit.RunHandle 'h' SUCCESSFUL>"


def test_retries_with_backoff_are_recorded_as_attempts(runtime: evkit.Runtime) -> None:
    assert flaky.step(2).run(workflow_id="r") == "ok"
    assert CALLS == ["flaky"] * 3
    assert evkit.sql("SELECT attempts, state FROM steps").fetchall() == [(3, "succeeded")]


def test_a_snapshot_has_when_each_step_last_entered_each_state(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(
        add.step(flaky.step(1), workflow.wait_for_event(workflow.ManualListener, key="go")).with_options(
            name="sum"
        ),
        workflow_id="times",
    )
    workflow.send_event("times", "go", 1)
    with pytest.raises(workflow.WorkflowExecutionError):  # "ok" + 1
        handle.result(timeout=10)
    snapshot = handle.snapshot()

    event = snapshot.step("ManualListener").state_times
    assert list(event) == ["waiting", "received", "checkpointed", "committed"]
    assert event["waiting"] <= event["received"] <= event["checkpointed"] <= event["committed"]
    retried = snapshot.step("flaky").state_times  # running, pending (to retry), running, done
    assert list(retried) == ["pending", "running", "done"]
    assert retried["pending"] < retried["running"] < retried["done"]  # the latest of each
    assert list(snapshot.step("sum").state_times) == ["running", "failed"]


def test_exceptions_are_not_retried_unless_asked(runtime: evkit.Runtime) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        flaky.options(retry_exceptions=False).step(5).run(workflow_id="nr")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert CALLS == ["flaky"]
    assert workflow.get_status("nr") is workflow.FAILED
    stored_message = r"^Step 'flaky' of run 'nr' failed after 1 attempt"
    with pytest.raises(evkit.StepFailedError, match=stored_message) as stored:
        workflow.get_output("nr")
    assert isinstance(stored.value.__cause__, RuntimeError)


def test_catch_exceptions_returns_result_and_error_pairs(runtime: evkit.Runtime) -> None:
    assert divide.step(1, 2).run() == (0.5, None)
    result, error = divide.step(1, 0).run()
    assert result is None
    assert isinstance(error, ZeroDivisionError)


def test_duplicate_running_workflow_id_is_refused(runtime: evkit.Runtime) -> None:
    node = workflow.wait_for_event(workflow.ManualListener, key="k")
    handle = workflow.run_async(node, workflow_id="dup")
    with pytest.raises(evkit.RunStateError, match=r"^Run 'dup' is already running in this process"):
        workflow.run_async(node, workflow_id="dup")
    handle.cancel()


def test_resume_of_an_unknown_id_says_so(runtime: evkit.Runtime) -> None:
    with pytest.raises(
        workflow.WorkflowNotResumableError, match=r"^Run 'nope' is not in store '.*evkit.duckdb'"
    ):
        workflow.resume("nope")
    assert workflow.list_all() == []


def test_status_queries_of_unknown_runs_raise_not_found(runtime: evkit.Runtime) -> None:
    with pytest.raises(workflow.WorkflowNotFoundError, match=r"^Run 'ghost' is not in store"):
        workflow.get_status("ghost")
    with pytest.raises(TypeError, match=r"^`workflow_id` must be a str, got int 3"):
        workflow.get_status(3)  # type: ignore[arg-type]
    with pytest.raises(workflow.WorkflowNotFoundError):
        workflow.send_event("ghost", "k", 1)


def test_list_all_filters_by_status(runtime: evkit.Runtime) -> None:
    add.step(1, 1).run(workflow_id="a")
    with pytest.raises(workflow.WorkflowExecutionError):
        flaky.options(retry_exceptions=False).step(9).run(workflow_id="b")
    assert workflow.list_all() == [("a", workflow.SUCCESSFUL), ("b", workflow.FAILED)]
    assert workflow.list_all("FAILED") == [("b", workflow.FAILED)]
    assert workflow.list_all({workflow.SUCCESSFUL}) == [("a", workflow.SUCCESSFUL)]
    with pytest.raises(ValueError, match="unknown status 'DONE'"):
        workflow.list_all("DONE")
    with pytest.raises(TypeError):
        workflow.list_all(3)  # type: ignore[arg-type]


def test_cancel_and_delete(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="k"), workflow_id="c")
    with pytest.raises(evkit.WorkflowStillActiveError):
        workflow.delete("c")
    workflow.cancel("c")
    with pytest.raises(workflow.WorkflowCancellationError):
        handle.result(timeout=10)
    assert workflow.get_status("c") is workflow.CANCELED
    workflow.delete("c")
    assert workflow.list_all() == []
    with pytest.raises(workflow.WorkflowNotFoundError):
        workflow.delete("c")


def test_metadata_of_runs_and_steps(runtime: evkit.Runtime) -> None:
    node = add.options(metadata={"owner": "ana"}).step(2, 2)
    node.run(workflow_id="m", metadata={"project": "demo"})
    meta = workflow.get_metadata("m")
    assert meta["status"] == "SUCCESSFUL"
    assert meta["user_metadata"] == {"project": "demo"}
    stats = meta["stats"]
    assert isinstance(stats, dict)
    assert stats["end_time"] >= stats["start_time"]
    step_meta = workflow.get_metadata("m", "add")
    assert step_meta["user_metadata"] == {"owner": "ana"}
    assert step_meta["attempts"] == 1
    with pytest.raises(
        workflow.WorkflowNotFoundError, match=r"^Run 'm' has no step 'nope'. Its steps: 'add'."
    ):
        workflow.get_metadata("m", "nope")


def test_steps_run_off_the_loop_unless_async(runtime: evkit.Runtime) -> None:
    @workflow.step
    def where() -> str:
        return threading.current_thread().name

    @workflow.step
    async def where_async() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert where.step().run().startswith("evkit-step")
    assert where_async.step().run() == "evkit-engine"


def test_step_context_names_the_run_and_step(runtime: evkit.Runtime) -> None:
    @workflow.step
    def me() -> tuple[str, str]:
        return workflow.get_current_workflow_id(), workflow.get_current_step_id()

    assert me.step().run(workflow_id="ctx") == ("ctx", "me")
    with pytest.raises(LookupError, match="outside a workflow step"):
        workflow.get_current_workflow_id()


def test_unpicklable_step_result_fails_with_a_clear_message(runtime: evkit.Runtime) -> None:
    @workflow.step
    def lock() -> object:
        return threading.Lock()

    with pytest.raises(
        workflow.WorkflowExecutionError, match="returned a value of type lock that cannot be checkpointed"
    ):
        lock.step().run(workflow_id="u")


def test_resume_all_picks_up_resumable_runs(store_path: str) -> None:
    runtime = workflow.init(storage=store_path, loop="thread")
    workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="k"), workflow_id="left")
    workflow.shutdown()  # the run stays RUNNING in the store: RESUMABLE for the next runtime
    assert runtime.closed
    workflow.init(storage=store_path, loop="thread")
    try:
        assert workflow.list_all() == [("left", workflow.RESUMABLE)]
        [(workflow_id, handle)] = workflow.resume_all()
        assert workflow_id == "left"
        workflow.send_event("left", "k", "late")
        assert handle.result(timeout=10) == "late"
    finally:
        workflow.shutdown()


async def test_blocking_run_works_inside_a_running_loop(aruntime: evkit.Runtime) -> None:
    # What a notebook cell does: a synchronous run() while the loop is running.
    assert add.step(20, 22).run(workflow_id="nested") == 42
    assert workflow.get_status("nested") is workflow.SUCCESSFUL


def test_an_event_id_reused_under_another_key_is_refused(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="a"), workflow_id="ids")
    workflow.send_event("ids", "a", 1, event_id="e1")
    refused = r"^Event id 'e1' was already sent to run 'ids' under key 'a', not 'b'"
    with pytest.raises(ValueError, match=refused):
        workflow.send_event("ids", "b", 2, event_id="e1")
    assert handle.result(timeout=10) == 1


def test_sql_after_reopening_stores_reads_the_open_one(tmp_path: pathlib.Path) -> None:
    # A cursor cached for a closed runtime must never be reused by the next one (its
    # object may even get the same id()).
    for i in range(20):
        workflow.init(storage=str(tmp_path / f"s{i}.duckdb"), loop="thread")
        try:
            add.step(i, 0).run(workflow_id=f"r{i}")
            assert evkit.sql("SELECT workflow_id FROM workflows").fetchall() == [(f"r{i}",)]
        finally:
            workflow.shutdown()
            gc.collect()  # free the runtime now, so the next one may take its address
