"""The re-run plan: which checkpoints a DAG reuses and which steps run again (no store)."""

from __future__ import annotations

import pytest

from evkit import workflow
from evkit.dag import FlatDag, flatten
from evkit.execution.plan import RunPlan, make_plan, resolve_step_names
from evkit.execution.prints import EVENT_PRINT, fingerprint_dag


@workflow.step
def load() -> int:
    return 21


@workflow.step
def scale(x: int, factor: int) -> int:
    return x * factor


@workflow.step
def total(*values: int) -> int:
    return sum(values)


def _redefined_scale() -> workflow.StepFunction:  # type: ignore[type-arg]
    @workflow.step(name="scale")
    def scale(x: int, factor: int) -> int:
        return x * factor + 1

    return scale


def _plan(
    dag: FlatDag, stored: FlatDag, *, checkpointed: set[str] | None = None, **kwargs: object
) -> RunPlan:
    done = {s.step_id for s in stored.steps} if checkpointed is None else checkpointed
    return make_plan(
        workflow_id="w",
        dag=dag,
        prints=fingerprint_dag(dag),
        stored_prints=fingerprint_dag(stored),
        checkpointed=done,
        started=done,
        generations={},
        revision=1,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_same_dag_built_again_reuses_every_checkpoint() -> None:
    plan = _plan(flatten(scale.step(load.step(), 2)), flatten(scale.step(load.step(), 2)))
    assert plan == RunPlan(workflow_id="w", revision=2, reused=("load", "scale"))
    assert not plan.changed
    assert plan.summary() == "Run 'w' re-run: reused 2 steps: load, scale; re-running none."


def test_a_changed_literal_reruns_the_step_and_its_downstream_only() -> None:
    stored = flatten(total.step(scale.step(load.step(), 2), load.step()))
    plan = _plan(flatten(total.step(scale.step(load.step(), 3), load.step())), stored)
    assert plan.reused == ("load", "load_1")
    assert dict(plan.rerun) == {"scale": "input changed", "total": "input changed"}
    assert [(s.step_id, s.generation, s.reason) for s in plan.supersede] == [
        ("scale", 2, "input changed"),
        ("total", 2, "input changed"),
    ]


def test_changed_code_is_named_as_such_and_its_downstream_as_input_changed() -> None:
    stored = flatten(total.step(scale.step(load.step(), 2)))
    plan = _plan(flatten(total.step(_redefined_scale().step(load.step(), 2))), stored)
    assert dict(plan.rerun) == {"scale": "code changed", "total": "input changed"}
    assert plan.summary() == (
        "Run 'w' re-run: reused 1 step: load; re-running 2 steps: scale (code changed), "
        "total (input changed)."
    )


def test_an_event_step_keeps_its_event_whatever_changed_unless_repolled() -> None:
    def dag(key: str, factor: int) -> FlatDag:
        event = workflow.wait_for_event(workflow.ManualListener, key=key, name="approval")
        return flatten(scale.step(event, factor))

    stored = dag("a", 2)
    assert fingerprint_dag(stored)["approval"] == EVENT_PRINT
    kept = _plan(dag("b", 2), stored)
    assert kept.reused == ("approval", "scale")
    polled = _plan(dag("a", 2), stored, repoll={"approval"})
    assert dict(polled.rerun) == {"approval": "repoll", "scale": "input changed"}


def test_a_wait_with_nothing_checkpointed_starts_again_when_its_upstream_changed() -> None:
    def dag(seconds: float) -> FlatDag:
        return flatten(total.step(workflow.sleep(seconds, name="pause")))

    plan = make_plan(
        workflow_id="w",
        dag=dag(10),
        prints=fingerprint_dag(dag(10)),
        stored_prints=fingerprint_dag(dag(5)),
        checkpointed={"sleep_deadline"},
        started={"sleep_deadline", "pause"},  # the timer waits
        generations={},
        revision=1,
    )
    assert dict(plan.rerun) == {
        "sleep_deadline": "input changed",
        "pause": "input changed",
        "total": "input changed",
    }
    assert [(s.step_id, s.generation) for s in plan.supersede] == [("sleep_deadline", 2), ("pause", 2)]
    checkpointed = _plan(dag(10), dag(5))
    assert dict(checkpointed.rerun) == {"sleep_deadline": "input changed"}
    assert checkpointed.reused == ("pause", "total")


def test_added_removed_and_never_run_steps() -> None:
    stored = flatten(total.step(scale.step(load.step(), 2), scale.step(load.step(), 5)))
    dag = flatten(total.step(scale.step(load.step(), 2), load.step(), scale.step(load.step(), 7)))
    plan = _plan(dag, stored, checkpointed={"load", "scale", "load_1"})
    assert dict(plan.rerun)["scale_1"] == "input changed"
    assert dict(plan.rerun)["load_2"] == "added"
    assert dict(plan.rerun)["total"] == "input changed"
    assert plan.pending == ()
    assert plan.removed == ()
    shrunk = _plan(flatten(scale.step(load.step(), 2)), stored)
    assert shrunk.removed == ("load_1", "scale_1", "total")
    assert [(s.step_id, s.reason) for s in shrunk.supersede] == [
        ("load_1", "removed"),
        ("scale_1", "removed"),
        ("total", "removed"),
    ]


def test_an_unchanged_step_without_a_checkpoint_just_runs() -> None:
    stored = flatten(scale.step(load.step(), 2))
    plan = _plan(flatten(scale.step(load.step(), 2)), stored, checkpointed={"load"})
    assert (plan.reused, plan.pending, dict(plan.rerun), plan.supersede) == (("load",), ("scale",), {}, ())


def test_a_continuations_steps_go_with_their_parent() -> None:
    stored = flatten(scale.step(load.step(), 2))
    plan = make_plan(
        workflow_id="w",
        dag=flatten(scale.step(load.step(), 3)),
        prints=fingerprint_dag(flatten(scale.step(load.step(), 3))),
        stored_prints=fingerprint_dag(stored),
        checkpointed={"load", "scale", "scale/inner"},
        started={"load", "scale", "scale/inner"},
        generations={"scale": 2},
        revision=2,
    )
    assert plan.revision == 3
    assert plan.removed == ()
    assert [(s.step_id, s.generation, s.reason) for s in plan.supersede] == [
        ("scale", 3, "input changed"),
        ("scale/inner", 2, "input changed"),
    ]


def test_names_resolve_by_id_or_name_and_unknown_ones_list_the_known() -> None:
    dag = flatten(scale.step(workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"), 2))
    assert resolve_step_names(dag, ["approval"], argument="repoll", workflow_id="w", kind="event") == {
        "approval"
    }
    with pytest.raises(ValueError, match=r"^`rerun` names 'nope', .* Its function steps: 'scale'\."):
        resolve_step_names(dag, ["nope"], argument="rerun", workflow_id="w", kind="function")
    with pytest.raises(TypeError, match=r"write \['approval'\]"):
        resolve_step_names(dag, "approval", argument="repoll", workflow_id="w", kind="event")
