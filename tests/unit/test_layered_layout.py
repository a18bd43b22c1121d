"""The layered layout of a DAG, as pure computation: exact positions and their invariants.

tests/ui/test_layout.py covers choosing between dot and layers; these tests pin what the
layered engine computes (the browser's JavaScript port must place nodes alike).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from evkit.model import StepShape
from evkit.notebook.layout import NODE_HEIGHT, NODE_WIDTH, Layout, compute_layout, layout_for

# The layer pitch is a node and a 60 px gap; the row pitch a node and a 14 px gap; the
# canvas has a 10 px margin.
PITCH_X = NODE_WIDTH + 60.0
PITCH_Y = NODE_HEIGHT + 14.0


def layers(steps: list[tuple[str, tuple[str, ...]]]) -> Layout:
    return compute_layout(steps, engine="layers")


def test_a_diamond_has_three_columns_with_the_middle_two_rows_high() -> None:
    result = layers([("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c"))])
    assert result.engine == "layers"
    assert dict(result.positions) == {
        "a": (85.0, 47.0),
        "b": (295.0, 25.0),
        "c": (295.0, 69.0),
        "d": (505.0, 47.0),
    }
    assert (result.width, result.height) == (590.0, 94.0)
    assert result.edges == (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))


def test_a_step_sits_one_column_right_of_its_furthest_upstream() -> None:
    # c takes from a directly and through b: the longer path decides its column.
    result = layers([("a", ()), ("b", ("a",)), ("c", ("a", "b"))])
    assert [result.positions[s][0] for s in "abc"] == [85.0, 295.0, 505.0]
    assert result.height == 50.0  # one row


def test_each_column_is_ordered_by_the_mean_row_of_its_upstreams() -> None:
    # x hangs off the lower source and y off the upper one: y is drawn above x, so the
    # edges do not cross, although x comes first in the input.
    result = layers([("s0", ()), ("s1", ()), ("x", ("s1",)), ("y", ("s0",))])
    assert result.positions["s0"] == (85.0, 25.0)
    assert result.positions["s1"] == (85.0, 69.0)
    assert result.positions["y"] == (295.0, 25.0)
    assert result.positions["x"] == (295.0, 69.0)


def test_shorter_columns_are_centred_on_the_tallest() -> None:
    result = layers([("a", ()), ("b", ()), ("c", ()), ("d", ("a", "b", "c"))])
    assert [result.positions[s][1] for s in "abcd"] == [25.0, 69.0, 113.0, 69.0]
    assert result.height == 3 * PITCH_Y - 14.0 + 20.0


def test_one_step_and_no_steps_get_a_canvas_with_margins() -> None:
    one = layers([("only", ())])
    assert (dict(one.positions), one.width, one.height) == ({"only": (85.0, 25.0)}, 170.0, 50.0)
    empty = compute_layout([], engine="layers")
    assert (dict(empty.positions), empty.edges, empty.width, empty.height) == ({}, (), 20.0, 20.0)


def test_covers_says_whether_ids_need_a_new_layout() -> None:
    result = layers([("a", ()), ("b", ("a",))])
    assert result.covers(["a", "b"])
    assert result.covers([])
    assert not result.covers(["a", "new"])


def test_layout_for_takes_a_runs_step_shapes() -> None:
    shapes: list[StepShape] = [("wait", "event", ()), ("use", "function", ("wait",))]
    assert layout_for(shapes, engine="layers") == layers([("wait", ()), ("use", ("wait",))])


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, tuple[str, ...]]]:
    """Random DAGs in topological order: each step takes from up to three earlier ones."""
    steps: list[tuple[str, tuple[str, ...]]] = []
    for i in range(draw(st.integers(0, 25))):
        earlier = [step_id for step_id, _ in steps]
        ups = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
        steps.append((f"s{i}", tuple(ups)))
    return steps


def _longest_path(steps: list[tuple[str, tuple[str, ...]]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for step_id, ups in steps:
        depth[step_id] = max((depth[u] + 1 for u in ups), default=0)
    return depth


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(dags())
def test_layers_put_each_step_in_its_longest_path_column_without_overlaps(
    steps: list[tuple[str, tuple[str, ...]]],
) -> None:
    result = layers(steps)
    depth = _longest_path(steps)
    assert set(result.positions) == set(depth)
    for step_id, (x, y) in result.positions.items():
        assert x == 10.0 + NODE_WIDTH / 2 + depth[step_id] * PITCH_X
        assert NODE_WIDTH / 2 <= x <= result.width - NODE_WIDTH / 2
        assert NODE_HEIGHT / 2 <= y <= result.height - NODE_HEIGHT / 2
    for a, b in result.edges:
        assert result.positions[a][0] < result.positions[b][0]
    boxes = sorted(result.positions.values())
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x1 - x2) >= NODE_WIDTH or abs(y1 - y2) >= PITCH_Y, "boxes overlap"
    columns = max(depth.values(), default=-1) + 1
    assert result.width == (columns * PITCH_X - 60.0 + 20.0 if columns else 20.0)
