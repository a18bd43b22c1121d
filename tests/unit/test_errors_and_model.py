"""The exception tree and the pure data records."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest

import evkit
from evkit import errors
from evkit.model import RunSnapshot, StepSnapshot, WorkflowStatus


def test_ray_compatible_names_sit_in_the_tree() -> None:
    assert issubclass(errors.WorkflowExecutionError, errors.WorkflowError)
    assert issubclass(errors.StepFailedError, errors.WorkflowExecutionError)
    assert issubclass(errors.WorkflowDefinitionError, TypeError)
    assert issubclass(errors.RunStateError, RuntimeError)
    assert issubclass(errors.WorkflowNotFoundError, KeyError)
    assert issubclass(errors.StoreLockedError, errors.StoreError)
    assert issubclass(errors.EventTimeoutError, errors.RunError)


@pytest.mark.parametrize(
    "error",
    [
        errors.StepFailedError("step s failed", workflow_id="w", step="s"),
        errors.EventTimeoutError("late", workflow_id="w", step="s", timeout_seconds=3.0),
        errors.StoreLockedError("locked", path="/x.duckdb"),
        errors.WorkflowNotFoundError("Run 'w' is not in store", workflow_id="w"),
        errors.RunStateError("busy", workflow_id="w"),
    ],
)
def test_errors_keep_their_fields_through_pickle(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_not_found_message_is_not_quoted_like_a_key_error() -> None:
    assert str(errors.WorkflowNotFoundError("Run 'w' is not in store")) == "Run 'w' is not in store"


def test_statuses_know_which_are_final() -> None:
    assert WorkflowStatus.SUCCESSFUL.is_final
    assert not WorkflowStatus.WAITING.is_final
    assert str(WorkflowStatus.RESUMABLE) == "RESUMABLE"
    assert evkit.workflow.RUNNING is WorkflowStatus.RUNNING


def test_snapshot_lookup_and_summary() -> None:
    snapshot = RunSnapshot(
        workflow_id="w",
        status=WorkflowStatus.WAITING,
        steps=(
            StepSnapshot(step_id="e", name="e", kind="event", state="waiting"),
            StepSnapshot(step_id="s", name="s", kind="function", state="pending", upstream=("e",)),
        ),
        waiting_on=("e",),
    )
    assert snapshot.step("s").upstream == ("e",)
    with pytest.raises(KeyError, match=r"Run 'w' has no step 'x'. Known steps: 'e', 's'."):
        snapshot.step("x")
    assert snapshot.summary() == "status: WAITING\n  e [event]: waiting\n  s [function]: pending"


def test_the_engines_fast_records_equal_the_constructors_and_stay_frozen() -> None:
    import dataclasses

    from evkit.context import EventContext
    from evkit.model import StepSnapshot, make_step_snapshot, record_maker
    from evkit.services import ServiceRegistry

    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    fields = {
        "step_id": "wait_1",
        "name": "wait",
        "kind": "event",
        "state": "waiting",
        "upstream": ("a",),
        "attempts": 2,
        "listener": "ManualListener",
        "args_text": '["k"]',
        "state_times": {"waiting": when},
        "deadline": when,
        "timeout_at": None,
        "error": None,
        "inbox_key": "k",
        "label": "k",
        "reused": True,
    }
    assert [f.name for f in dataclasses.fields(StepSnapshot)] == list(fields)
    fast = make_step_snapshot(*fields.values())
    assert fast == StepSnapshot(**fields)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.state = "done"  # type: ignore[misc]
    with pytest.raises(ValueError, match="zip"):
        make_step_snapshot("too", "short")
    # A subclass's inherited fields are filled too, and the record pickles as usual.
    clock = evkit.WallClock()
    services = ServiceRegistry()
    context = record_maker(EventContext)("wf", "wait_1", 1, clock, "wf/wait_1", services, 1.5)
    assert context == EventContext(
        workflow_id="wf",
        step_id="wait_1",
        attempt=1,
        clock=clock,
        event_id="wf/wait_1",
        services=services,
        deadline=1.5,
    )
    restored = pickle.loads(pickle.dumps(context))
    assert (restored.workflow_id, restored.step_id, restored.event_id) == ("wf", "wait_1", "wf/wait_1")
    assert isinstance(restored.clock, evkit.WallClock)
