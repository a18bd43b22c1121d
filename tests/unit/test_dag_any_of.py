"""workflow.wait_for_any as a DAG: one event step after a start step, its branches stored
in the step (so a resume rebuilds them), its listener's name and deadlines, and the
mistakes refused where they are written."""

from __future__ import annotations

import pytest

from evkit import codec, workflow
from evkit.dag import Ref, flatten
from evkit.errors import WorkflowDefinitionError
from evkit.listeners.any_of import AnyOfListener


@workflow.step
def make_key() -> str:
    return "approve"


def test_branches_are_one_event_step_after_a_start_step_that_waits_for_their_upstream() -> None:
    key = make_key.step()
    node = workflow.wait_for_any(
        {"approve": workflow.wait_for_event(workflow.ManualListener, key), "expired": workflow.sleep(60)}
    )
    dag = flatten(node)
    assert [(s.step_id, s.kind, s.upstream) for s in dag.steps] == [
        ("make_key", "function", ()),
        ("any_of_start", "function", ("make_key",)),
        ("any_of", "event", ("make_key", "any_of_start")),
    ]
    any_of = dag.steps[-1]
    assert any_of.args == (
        (("approve", (Ref("make_key"),), {}, None), ("expired", (), {}, 60.0)),
        Ref("any_of_start"),
    )
    assert any_of.listener is not None
    assert issubclass(any_of.listener, AnyOfListener)
    assert any_of.listener.__name__ == "any of: approve, expired"
    assert any_of.listener.uses_inbox  # a ManualListener branch reads the inbox


def test_a_stored_dag_rebuilds_the_branch_listeners() -> None:
    node = workflow.wait_for_any([workflow.wait_for_event(workflow.ManualListener, "k"), workflow.sleep(1)])
    listener = codec.loads(codec.dumps(flatten(node))).steps[-1].listener
    assert listener.__qualname__ == "any of: 0, 1"
    assert listener.branch_listeners == {0: workflow.ManualListener, 1: workflow.TimerListener}


def test_the_same_branches_share_one_listener_class() -> None:
    def make() -> object:
        return workflow.wait_for_any({"a": workflow.wait_for_event(workflow.ManualListener, "a")})

    assert make().listener is make().listener  # type: ignore[attr-defined]


def test_describe_wait_gives_the_earliest_deadline_from_the_start_and_the_first_inbox_key() -> None:
    node = workflow.wait_for_any(
        {
            "approve": workflow.wait_for_event(workflow.ManualListener, "approve"),
            "late": workflow.sleep(60),
            "soon": workflow.sleep(5),
            "fixed": workflow.wait_for_event(workflow.TimerListener, 1_000.0),
        }
    )
    step = flatten(node).steps[-1]
    assert step.listener is not None
    branches = step.args[0]
    description = step.listener.describe_wait((branches, 100.0), {}, now=999_999.0)
    assert (description.deadline, description.inbox_key) == (105.0, "approve")


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ({}, r"^wait_for_any\(\) needs at least one branch, got none\.$"),
        ("abc", r"^wait_for_any\(\) needs a dict of named event steps or a list of them, got str\.$"),
        (
            {"": workflow.sleep(1)},
            r"^wait_for_any\(\): branch names must be non-empty strings, got ''\. Name each branch",
        ),
        (
            [make_key.step()],
            r"^wait_for_any\(\): branch 0 must be an event step \(made by wait_for_event\(\) or "
            r"workflow\.sleep\(\)\), got <evkit step node 'make_key'>\.$",
        ),
        (
            {"a": workflow.wait_for_event(workflow.ManualListener, "a", timeout_seconds=5)},
            r"^wait_for_any\(\): branch 'a' has its own `timeout_seconds`; give `timeout_seconds`",
        ),
        (
            {"a": workflow.wait_for_any([workflow.sleep(1)])},
            r"^wait_for_any\(\): branch 'a' is itself a wait_for_any\(\); put its branches in this one",
        ),
    ],
)
def test_mistakes_are_refused_where_they_are_written(branches: object, message: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        workflow.wait_for_any(branches)  # type: ignore[arg-type]


def test_timeout_seconds_must_be_positive() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"^`timeout_seconds` must be positive, got 0\.$"):
        workflow.wait_for_any([workflow.sleep(1)], timeout_seconds=0)


def test_the_readable_payload_is_a_json_array_that_names_the_winner() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    listener = AnyOfListener()  # no winner yet: each branch's event in its plain form
    assert listener.readable(("approve", {"user": "ana"})) == '["approve", {"user": "ana"}]'
    assert listener.readable((2, Opaque())) == '[2, "Opaque()"]'
    assert listener.readable("a default") == '"a default"'
