"""Laying out DAGs: graphviz when installed, topological layers otherwise."""

from __future__ import annotations

import shutil

import pytest
from _ui_snapshots import grid

from evkit.notebook import layout as layout_module
from evkit.notebook.layout import NODE_HEIGHT, NODE_WIDTH, compute_layout

DIAMOND = [("a", ()), ("b", ("a",)), ("c", ("a",)), ("d", ("b", "c"))]


def _assert_drawable(result, steps):
    assert set(result.positions) == {s for s, _ in steps}
    for a, b in result.edges:
        assert result.positions[a][0] < result.positions[b][0], f"{a} -> {b} does not go right"
    boxes = list(result.positions.values())
    for i, (x1, y1) in enumerate(boxes):
        assert NODE_WIDTH / 2 <= x1 <= result.width - NODE_WIDTH / 2 + 1
        assert NODE_HEIGHT / 2 <= y1 <= result.height - NODE_HEIGHT / 2 + 1
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x1 - x2) >= NODE_WIDTH or abs(y1 - y2) >= NODE_HEIGHT, "boxes overlap"


def test_layers_place_every_step_right_of_its_upstream_without_overlap():
    result = compute_layout(DIAMOND, engine="layers")
    assert result.engine == "layers"
    assert set(result.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    _assert_drawable(result, DIAMOND)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_dot_layout_of_200_steps_is_used_when_graphviz_is_installed():
    steps = [(s.step_id, s.upstream) for s in grid().steps]
    result = compute_layout(steps, engine="auto")
    assert result.engine == "dot"
    _assert_drawable(result, steps)


def test_auto_falls_back_to_layers_without_graphviz(monkeypatch):
    monkeypatch.setattr(layout_module.shutil, "which", lambda name: None)
    assert compute_layout(DIAMOND).engine == "layers"
    with pytest.raises(FileNotFoundError, match=r"^compute_layout\(engine='dot'\) needs graphviz"):
        compute_layout(DIAMOND, engine="dot")


def test_upstream_ids_outside_the_dag_are_ignored_and_empty_dags_have_a_canvas():
    result = compute_layout([("x", ("gone",))], engine="layers")
    assert result.edges == ()
    empty = compute_layout([])
    assert empty.positions == {}
    assert empty.width > 0


def test_auto_lays_out_big_dags_in_layers_without_running_dot(monkeypatch):
    def no_dot(*args, **kwargs):
        raise AssertionError("dot was run for a DAG above DOT_MAX_NODES")

    monkeypatch.setattr(layout_module.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(layout_module.subprocess, "run", no_dot)
    big = [(f"s{i}", (f"s{i - 1}",) if i else ()) for i in range(layout_module.DOT_MAX_NODES + 1)]
    assert compute_layout(big).engine == "layers"
    assert not layout_module.dot_would_be_used(len(big))
    assert layout_module.dot_would_be_used(layout_module.DOT_MAX_NODES)
    assert not layout_module.dot_would_be_used(3, engine="layers")
