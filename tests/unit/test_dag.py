"""Building DAGs: decorators, options, event nodes, ids and topological order."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, strategies as st

from evkit import workflow
from evkit.dag import NO_DEFAULT, Ref, StepNode, flatten, resolve_refs
from evkit.errors import WorkflowDefinitionError


@workflow.step
def add(a: int, b: int) -> int:
    return a + b


def test_step_works_bare_and_called_and_keeps_the_function() -> None:
    @workflow.step(name="plus", max_retries=1)
    def plus(a: int) -> int:
        return a + 1

    assert add(1, 2) == 3  # calling it just calls the function
    assert plus(1) == 2
    assert plus.step(1).name == "plus"
    assert plus.step(1).options.max_retries == 1
    assert add.step(1, 2).name == "add"
    assert add.__name__ == "add"


def test_bad_options_and_arguments_are_refused_where_they_are_written() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"got unknown option\(s\) 'retries'. Valid options: "):
        workflow.step(retries=3)
    with pytest.raises(WorkflowDefinitionError, match=r"`max_retries` must be an integer >= 0, got -1"):
        add.options(max_retries=-1)
    with pytest.raises(WorkflowDefinitionError, match=r"`name` must not contain '/'"):
        add.options(name="a/b")
    with pytest.raises(WorkflowDefinitionError, match=r"`metadata` must be a JSON-serializable dict"):
        add.options(metadata={"lock": threading.Lock()})
    with pytest.raises(WorkflowDefinitionError, match=r"^Step 'add': arguments do not fit its signature"):
        add.step(1, 2, 3)


@pytest.mark.parametrize(
    ("args", "kwargs", "fits"),
    [
        ((1,), {}, True),  # the default of b
        ((1, 2), {"c": 3}, True),
        ((), {}, False),  # a is missing
        ((1, 2, 3), {}, False),  # one positional too many
        ((1,), {"d": 4}, False),  # no such keyword
    ],
)
def test_arguments_are_checked_against_the_signature_with_or_without_keywords(
    args: tuple[object, ...], kwargs: dict[str, object], fits: bool
) -> None:
    # Calls without keywords are checked by counting (a fast path); the verdict must be
    # the one Signature.bind gives.
    @workflow.step
    def f(a: int, b: int = 0, *, c: int = 0) -> int:
        return a + b + c

    if fits:
        f.step(*args, **kwargs)
    else:
        with pytest.raises(WorkflowDefinitionError, match=r"^Step 'f': arguments do not fit its signature"):
            f.step(*args, **kwargs)


def test_a_required_keyword_only_argument_is_asked_for() -> None:
    @workflow.step
    def g(a: int, *, key: str) -> str:
        return key

    with pytest.raises(WorkflowDefinitionError, match=r"missing a required argument: 'key'"):
        g.step(1)


def test_wait_for_event_refuses_what_is_not_an_event_listener() -> None:
    class NotAListener:
        async def poll_for_event(self) -> None: ...

    with pytest.raises(TypeError, match=r"^wait_for_event\(\) needs an EventListener subclass, got "):
        workflow.wait_for_event(NotAListener)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an EventListener subclass"):
        workflow.wait_for_event(workflow.TimerListener(), 1.0)  # type: ignore[arg-type]


def test_wait_for_event_refuses_a_listener_class_that_cannot_be_pickled() -> None:
    class Locked(workflow.EventListener):
        lock = threading.Lock()

    with pytest.raises(WorkflowDefinitionError, match=r"^Listener class '.*Locked' cannot be pickled"):
        workflow.wait_for_event(Locked)


def test_wait_for_event_checks_the_timeout() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"^`timeout_seconds` must be positive, got 0"):
        workflow.wait_for_event(workflow.ManualListener, key="k", timeout_seconds=0)
    node = workflow.wait_for_event(workflow.ManualListener, key="k")
    assert node.default is NO_DEFAULT
    assert node.kwargs == {"key": "k"}
    assert node.name == "ManualListener"


def test_sleep_refuses_negative_durations() -> None:
    with pytest.raises(ValueError, match=r"^`seconds` must be a number >= 0, got -1"):
        workflow.sleep(-1)


def test_flatten_names_steps_uniquely_and_shares_reused_nodes() -> None:
    shared = add.step(1, 2)
    root = add.step(shared, add.step(shared, 10))
    dag = flatten(root)
    assert [s.step_id for s in dag.steps] == ["add", "add_1", "add_2"]
    assert dag.output == "add_2"
    assert dag.by_id()["add_2"].args == (Ref("add"), Ref("add_1"))
    assert dag.by_id()["add_2"].upstream == ("add", "add_1")


def test_nodes_inside_lists_and_dicts_become_refs_and_resolve_back() -> None:
    @workflow.step
    def total(values: list[int], extra: dict[str, int]) -> int:
        return sum(values) + sum(extra.values())

    dag = flatten(total.step([add.step(1, 1), 5], {"x": add.step(2, 2)}))
    step = dag.by_id()["total"]
    assert step.upstream == ("add", "add_1")
    assert resolve_refs(step.args, {"add": 2, "add_1": 4}) == ([2, 5], {"x": 4})


def test_a_chain_of_twenty_thousand_steps_flattens_without_recursion() -> None:
    node: StepNode = add.step(0, 1)
    for _ in range(20_000):
        node = add.step(node, 1)
    dag = flatten(node)
    assert len(dag.steps) == 20_001
    assert dag.output == "add_20000"


def test_continuation_ids_are_prefixed_with_the_parent_step() -> None:
    dag = flatten(add.step(add.step(1, 2), 3), prefix="parent/")
    assert [s.step_id for s in dag.steps] == ["parent/add", "parent/add_1"]


@st.composite
def random_dags(draw: st.DrawFn) -> StepNode:
    """Random DAGs: each new node takes up to three earlier nodes as arguments."""
    nodes: list[StepNode] = []
    for _ in range(draw(st.integers(1, 30))):
        parents = draw(st.lists(st.sampled_from(nodes), max_size=3)) if nodes else []
        nodes.append(collect.step(*parents))
    return nodes[-1]


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


@given(random_dags())
def test_flatten_is_topological_with_unique_ids(root: StepNode) -> None:
    dag = flatten(root)
    seen: set[str] = set()
    for step in dag.steps:
        assert step.step_id not in seen
        assert set(step.upstream) <= seen  # every upstream step comes earlier
        seen.add(step.step_id)
    assert dag.steps[-1].step_id == dag.output


@given(random_dags())
def test_flatten_is_deterministic(root: StepNode) -> None:
    assert [s.step_id for s in flatten(root).steps] == [s.step_id for s in flatten(root).steps]
