"""What identifies an event step to the user: ``name=`` on ``wait_for_event``/``sleep``,
the labels listeners give their waits (a key, a stream, a deadline), and timers' readable
arguments in a local time zone."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from evkit import workflow
from evkit.dag import flatten, wait_for_event
from evkit.errors import WorkflowDefinitionError
from evkit.listeners.base import TimerListener, WaitDescription
from evkit.listeners.http import HTTPListener
from evkit.listeners.manual import ManualListener
from evkit.listeners.redis_streams import RedisStreamListener
from evkit.model import RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus, step_label


@workflow.step
def gather(*values: object) -> tuple[object, ...]:
    return values


def test_name_of_a_wait_is_its_id_made_unique_as_a_function_steps_name_is() -> None:
    dag = flatten(
        gather.step(
            wait_for_event(ManualListener, key="a", name="approval"),
            wait_for_event(ManualListener, key="b", name="approval"),
            wait_for_event(ManualListener, key="c"),
            workflow.sleep(5),
            workflow.sleep(5, name="cool-down"),
        )
    )
    ids = [s.step_id for s in dag.steps if s.kind == "event"]
    assert ids == ["approval", "approval_1", "ManualListener", "sleep", "cool-down"]
    names = {s.step_id: s.options.name for s in dag.steps if s.kind == "event"}
    # Only a name the user gave is one: `sleep` without name= is labelled by its deadline.
    assert names == {
        "approval": "approval",
        "approval_1": "approval",
        "ManualListener": None,
        "sleep": None,
        "cool-down": "cool-down",
    }


def test_name_is_not_passed_to_the_poll() -> None:
    node = wait_for_event(ManualListener, "k", name="approval")
    assert (node.args, node.kwargs) == (("k",), {})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", r"^wait_for_event\(ManualListener, \.\.\.\): `name` must be a non-empty string, got ''\.$"),
        (
            "a/b",
            r"^wait_for_event\(ManualListener, \.\.\.\): `name` must not contain '/', got 'a/b' "
            r"\('/' separates the steps of a dynamic continuation\)\.$",
        ),
    ],
)
def test_a_bad_name_fails_where_the_wait_is_written(name: str, message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        wait_for_event(ManualListener, key="k", name=name)


def test_sleep_rejects_a_bad_name_too() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"`name` must be a non-empty string, got ''"):
        workflow.sleep(1, name="")


@pytest.mark.parametrize("listener", [ManualListener, HTTPListener])
def test_an_inbox_wait_is_labelled_by_its_key(listener: type[ManualListener]) -> None:
    assert listener.describe_wait(("approve-42",), {}, now=0.0) == WaitDescription(
        inbox_key="approve-42", label="approve-42"
    )
    assert listener.describe_wait((), {"key": "approve-42"}, now=0.0).label == "approve-42"


def test_a_redis_stream_wait_is_labelled_by_its_stream() -> None:
    url = "redis://127.0.0.1:6379/0"
    positional = RedisStreamListener.describe_wait((url, "orders", "evkit", "worker-1"), {}, now=0.0)
    keywords = RedisStreamListener.describe_wait(
        (), {"url": url, "stream": "orders", "group": "evkit", "consumer": "worker-1"}, now=0.0
    )
    assert positional == keywords == WaitDescription(label="orders")


@pytest.mark.usefixtures("india_local_time")
def test_a_timers_arguments_read_as_a_local_time_with_its_offset() -> None:
    deadline = dt.datetime(2026, 12, 7, 19, 3, 48, 126000, tzinfo=dt.UTC).timestamp()

    described = TimerListener.describe_wait((deadline,), {}, now=0.0)
    by_keyword = TimerListener.describe_wait((), {"timestamp": deadline}, now=0.0)

    assert described.deadline == deadline
    assert described.label is None  # the deadline is the label, written where it is shown
    assert described.args_text == '["2026-12-08T00:33:48.126+05:30"]'
    assert json.loads(by_keyword.args_text or "") == {
        "args": [],
        "kwargs": {"timestamp": "2026-12-08T00:33:48.126+05:30"},
    }
    # Still one instant: it reads back as the deadline.
    assert dt.datetime.fromisoformat(json.loads(described.args_text or "")[0]).timestamp() == deadline


def _event(step_id: str, **fields: object) -> StepSnapshot:
    return StepSnapshot(step_id=step_id, name=step_id, kind="event", state="waiting", **fields)  # type: ignore[arg-type]


def test_a_label_wins_over_a_deadline_which_wins_over_nothing() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    named = _event("sleep", label="cool-down", deadline=when)
    timer = _event("sleep_1", deadline=when)
    bare = _event("Custom")
    function = StepSnapshot(step_id="f", name="f", kind="function", state="done", label=None)

    assert [step_label(s) for s in (named, timer, bare, function)] == ["cool-down", when, None, None]
    snapshot = RunSnapshot(
        workflow_id="w", status=WorkflowStatus.WAITING, steps=(named, timer, bare, function)
    )
    assert RunProgress.of_snapshot(snapshot).labels == {"sleep": "cool-down", "sleep_1": when}
