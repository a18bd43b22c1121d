"""Re-runs of a stored run: ``node.run(workflow_id=ID)`` reuses what is unchanged.

The scenario of a notebook user: a run fails downstream of an event, the user fixes the
step and runs the DAG again under the same id. Counters in module globals tell what
executed; the store tells what was polled and committed.
"""

from __future__ import annotations

import logging

import pytest

import evkit
from evkit import workflow

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


@workflow.step
def load() -> int:
    CALLS.append("load")
    return 21


@workflow.step
def add(a: int, b: int) -> int:
    CALLS.append(f"add({a}, {b})")
    return a + b


def _double(*, broken: bool) -> workflow.StepFunction:  # type: ignore[type-arg]
    # Both versions have one qualified name, as a notebook cell edited and run again has.
    if broken:

        @workflow.step(name="double", max_retries=0)
        def double(x: int) -> int:
            CALLS.append("double (broken)")
            raise ValueError("bug")

    else:

        @workflow.step(name="double", max_retries=0)
        def double(x: int) -> int:
            CALLS.append("double (fixed)")
            return x * 2

    return double


def _history(workflow_id: str) -> list[tuple[object, ...]]:
    return evkit.sql(
        "SELECT step_id, generation, reason, state, superseded FROM step_history "
        "WHERE workflow_id = ? ORDER BY step_id, generation",
        [workflow_id],
    ).fetchall()


@pytest.mark.slow
def test_a_fixed_step_runs_again_and_its_unchanged_upstream_is_reused(
    runtime: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(evkit.StepFailedError):
        _double(broken=True).step(load.step()).run(workflow_id="w1")
    caplog.set_level(logging.WARNING, logger="evkit")
    handle = workflow.run_async(_double(broken=False).step(load.step()), workflow_id="w1")
    assert handle.result() == 42
    assert CALLS == ["load", "double (broken)", "double (fixed)"]
    assert handle.plan is not None
    assert handle.plan.reused == ("load",)
    assert dict(handle.plan.rerun) == {"double": "code changed"}
    assert handle.plan.summary() == (
        "Run 'w1' re-run: reused 1 step: load; re-running 1 step: double (code changed)."
    )
    assert handle.plan.summary() in caplog.text
    assert evkit.sql(
        "SELECT step_id, state, generation, reused FROM steps WHERE workflow_id = 'w1' ORDER BY step_id"
    ).fetchall() == [("double", "succeeded", 2, False), ("load", "succeeded", 1, True)]
    assert _history("w1") == [
        ("double", 1, "first run", "failed", True),
        ("double", 2, "code changed", "succeeded", False),
        ("load", 1, "first run", "succeeded", False),
    ]
    # A step's metadata and details describe its current generation.
    step = workflow.get_metadata("w1", "double")
    assert (step["state"], step["attempts"], step["error"]) == ("succeeded", 1, None)


def test_resume_runs_the_stored_code_and_warns_of_the_new_definition(
    runtime: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _double(broken=True)
    with pytest.raises(evkit.StepFailedError):
        broken.step(load.step()).run(workflow_id="w2")
    fixed = _double(broken=False)  # the user fixes the cell: defined (and kept) here, not run
    caplog.set_level(logging.WARNING, logger="evkit")
    with pytest.raises(evkit.StepFailedError):
        workflow.resume("w2")
    # The stored code ran (a copy of it, unpickled: its CALLS is not this module's).
    assert evkit.sql("SELECT attempts, error FROM steps WHERE step_id = 'double'").fetchall() == [
        (2, "ValueError: bug")
    ]
    assert (
        "Run 'w2' resumes with its stored code, but this process defines step 'double' "
        f"({__name__}._double.<locals>.double) differently. To run the new "
        "code, build the DAG again and call node.run(workflow_id='w2'): it runs what changed "
        "and reuses every other checkpoint." in caplog.text
    )
    assert fixed.step(load.step()).run(workflow_id="w2") == 42


def test_a_different_dag_under_an_old_id_computes_its_own_output(runtime: evkit.Runtime) -> None:
    assert add.step(1, 2).run(workflow_id="old") == 3
    assert add.step(10, 20).run(workflow_id="old") == 30
    assert CALLS == ["add(1, 2)", "add(10, 20)"]
    assert workflow.get_output("old") == 30


def test_an_unchanged_finished_run_returns_its_stored_output_without_running(runtime: evkit.Runtime) -> None:
    node = add.step(load.step(), 1)
    assert node.run(workflow_id="same") == 22
    handle = workflow.run_async(add.step(load.step(), 1), workflow_id="same")
    assert handle.result() == 22
    assert CALLS == ["load", "add(21, 1)"]
    assert handle.plan is not None
    assert not handle.plan.changed
    assert handle.plan.reused == ("load", "add")


@pytest.mark.slow
def test_a_checkpointed_event_is_kept_and_polled_again_only_when_named(runtime: evkit.Runtime) -> None:
    def dag(offset: int) -> evkit.StepNode:
        event = workflow.wait_for_event(workflow.ManualListener, key="k", name="approval")
        return add.step(event, offset)

    first = workflow.run_async(dag(1), workflow_id="ev")
    workflow.send_event("ev", "k", 5)
    assert first.result() == 6
    # The listener's arguments change too: the event is kept all the same.
    changed = add.step(workflow.wait_for_event(workflow.ManualListener, key="other", name="approval"), 2)
    assert changed.run(workflow_id="ev") == 7
    assert evkit.sql(
        "SELECT generation, poll_attempts, commits FROM events WHERE workflow_id = 'ev'"
    ).fetchall() == [(1, 1, 1)]
    handle = workflow.run_async(dag(3), workflow_id="ev", repoll=["approval"])
    workflow.send_event("ev", "k", 100)
    assert handle.result() == 103
    assert handle.plan is not None
    assert dict(handle.plan.rerun) == {"approval": "repoll", "add": "input changed"}
    assert evkit.sql(
        "SELECT generation, poll_attempts, commits, payload FROM events WHERE workflow_id = 'ev'"
    ).fetchall() == [(2, 1, 1, "100")]
    assert _history("ev") == [
        ("add", 1, "first run", "succeeded", True),
        ("add", 2, "input changed", "succeeded", True),
        ("add", 3, "input changed", "succeeded", False),
        ("approval", 1, "first run", "committed", True),
        ("approval", 2, "repoll", "committed", False),
    ]


def test_repoll_of_an_unknown_step_names_the_event_steps(runtime: evkit.Runtime) -> None:
    node = add.step(workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"), 1)
    with pytest.raises(
        ValueError,
        match=r"^`repoll` names 'aproval', which is not one of the event steps of run 'x'\. "
        r"Its event steps: 'approval'\. Name a step by its id or by its `name=`\.$",
    ):
        node.run(workflow_id="x", repoll=["aproval"])
    assert workflow.list_all() == []


def test_a_removed_step_keeps_its_rows_marked_superseded(runtime: evkit.Runtime) -> None:
    assert add.step(add.step(1, 2), 3).run(workflow_id="rm") == 6
    handle = workflow.run_async(add.step(1, 2), workflow_id="rm")
    assert handle.result() == 3
    assert handle.plan is not None
    assert handle.plan.removed == ("add_1",)
    assert evkit.sql("SELECT step_id FROM steps WHERE workflow_id = 'rm'").fetchall() == [("add",)]
    assert _history("rm") == [
        ("add", 1, "first run", "succeeded", False),
        ("add_1", 1, "first run", "succeeded", True),
    ]
    assert CALLS == ["add(1, 2)", "add(3, 3)"]


@pytest.mark.slow
def test_fork_copies_the_checkpoints_and_reruns_what_it_is_told(runtime: evkit.Runtime) -> None:
    event = workflow.wait_for_event(workflow.ManualListener, key="k")
    first = workflow.run_async(add.step(event, load.step()), workflow_id="src")
    workflow.send_event("src", "k", 1)
    assert first.result() == 22
    fork = workflow.fork("src", "what-if", rerun=["load"])
    assert fork.result() == 22
    assert fork.plan is not None
    assert dict(fork.plan.rerun) == {"load": "rerun", "add": "input changed"}
    # With another DAG: the event is still the copied one, never polled again.
    other = workflow.fork(
        "src", "what-if-2", node=add.step(workflow.wait_for_event(workflow.ManualListener, key="k"), 100)
    )
    assert other.result() == 101
    rows = evkit.sql(
        "SELECT workflow_id, poll_attempts, commits, generation FROM events ORDER BY workflow_id"
    ).fetchall()
    assert rows == [("src", 1, 1, 1), ("what-if", 1, 1, 1), ("what-if-2", 1, 1, 1)]
    assert evkit.sql(
        "SELECT step_id, generation, reason FROM step_history "
        "WHERE workflow_id = 'what-if' AND NOT superseded ORDER BY step_id"
    ).fetchall() == [("ManualListener", 1, "first run"), ("add", 2, "input changed"), ("load", 2, "rerun")]
    assert evkit.sql(
        "SELECT count(*) FROM step_history WHERE workflow_id = 'src' AND superseded"
    ).fetchall() == [(0,)]
    with pytest.raises(evkit.RunStateError, match=r"already has a run 'what-if'"):
        workflow.fork("src", "what-if")
    with pytest.raises(evkit.WorkflowNotFoundError, match=r"run 'nope' is not in store"):
        workflow.fork("nope", "n2")


class _FailingCommit(workflow.ManualListener):
    async def event_checkpointed(self, event: object) -> None:
        raise ConnectionError("the source did not answer")


class _CountingCommit(workflow.ManualListener):
    async def event_checkpointed(self, event: object) -> None:
        CALLS.append(f"commit {event!r}")
        await super().event_checkpointed(event)


def test_an_uncommitted_event_is_committed_by_the_current_listener_class(runtime: evkit.Runtime) -> None:
    first = workflow.run_async(
        add.step(workflow.wait_for_event(_FailingCommit, key="k", name="approval"), 1), workflow_id="c"
    )
    workflow.send_event("c", "k", 5)
    with pytest.raises(evkit.WorkflowExecutionError):
        first.result()
    node = add.step(workflow.wait_for_event(_CountingCommit, key="k", name="approval"), 1)
    assert node.run(workflow_id="c") == 6
    assert CALLS == ["commit 5", "add(5, 1)"]
    assert evkit.sql("SELECT poll_attempts, commits FROM events WHERE workflow_id = 'c'").fetchall() == [
        (1, 1)
    ]
