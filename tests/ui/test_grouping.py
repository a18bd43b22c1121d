"""Which steps draw as one group node, and the static picture drawing them."""

from __future__ import annotations

import re

from _scale_runs import fan_out, small_run
from _ui_snapshots import at, grid

from evkit.model import RunProgress
from evkit.notebook import static
from evkit.notebook.grouping import base_name, group_steps, group_text
from evkit.notebook.layout import layout_for


def shapes(run):
    return RunProgress.of_snapshot(run).shapes


def test_base_name_strips_the_number_the_dag_adds_to_repeated_names():
    assert [base_name(s) for s in ("prep", "prep_1", "prep_12", "sleep_deadline", "n0_3")] == [
        "prep",
        "prep",
        "prep",
        "sleep_deadline",
        "n0",
    ]


def test_small_dags_are_drawn_step_by_step():
    drawing = group_steps(shapes(small_run()))
    assert not drawing.grouped
    assert [n.node_id for n in drawing.nodes][:2] == ["load", "prep"]
    assert len(drawing.nodes) == 10


def test_a_fan_out_groups_by_name_and_layer_with_each_edge_once():
    drawing = group_steps(shapes(fan_out(60, timers=3)))
    assert [(n.node_id, len(n.members)) for n in drawing.nodes] == [
        ("load", 1),
        ("group:function:prep@1", 60),
        ("sleep", 1),  # three timers: fewer than GROUP_MIN_SIZE
        ("sleep_1", 1),
        ("sleep_2", 1),
        ("group:event:ManualListener@2", 60),
        ("report", 1),
    ]
    assert drawing.edges == (
        ("load", "group:function:prep@1"),
        ("load", "sleep"),
        ("load", "sleep_1"),
        ("load", "sleep_2"),
        ("group:function:prep@1", "group:event:ManualListener@2"),
        ("group:event:ManualListener@2", "report"),
        ("sleep", "report"),
        ("sleep_1", "report"),
        ("sleep_2", "report"),
    )
    assert drawing.node_of["ManualListener_41"] == "group:event:ManualListener@2"


def test_an_expanded_group_draws_its_steps():
    drawing = group_steps(shapes(fan_out(60)), expanded={"group:function:prep@1"})
    ids = [n.node_id for n in drawing.nodes]
    assert ids[:3] == ["load", "prep", "prep_1"]
    assert "group:event:ManualListener@2" in ids
    assert len(ids) == 1 + 60 + 1 + 1


def test_each_layer_groups_its_own_steps_and_fewer_than_five_stay_apart():
    # grid(): layer L has n{L}_0 .. n{L}_19, every fifth an event step.
    drawing = group_steps(shapes(grid()))
    assert len(drawing.nodes) == 10 * (1 + 4)
    assert drawing.nodes[1].node_id == "group:function:n0@0"  # where its first step is
    assert len(drawing.nodes[1].members) == 16
    assert drawing.node_of["n3_5"] == "n3_5"


def test_group_text_shortens_the_name_to_fit_the_box():
    assert group_text("prep", 60) == "prep ×60"
    assert group_text("ManualListener", 4998) == "ManualListen… ×4,998"
    assert len(group_text("a_very_long_function_name", 1_000_000)) == 20


def test_static_picture_draws_big_runs_as_groups_with_counts_and_names():
    for branches in (48, 498, 4998):  # 100, 1,000 and 10,000 steps
        progress = RunProgress.of_snapshot(fan_out(branches, timers=2))
        html = static.render_html(progress, None, now=at(4.0).timestamp())
        done = branches * 2 // 3
        assert f'data-counts="{branches - done:,} waiting, {done:,} committed"' in html
        assert f">{group_text('ManualListener', branches)}</text>" in html
        assert f">prep ×{branches:,}</text>" in html
        assert re.search(r">Jan 01 1\d:00:00 [^<]*</text>", html)  # the timers, by deadline
        assert f"{len(progress.shapes):,} steps:" in html  # the counts line below the drawing
        assert len(html) < 40_000


def test_static_picture_of_a_small_run_shows_each_step_with_its_label():
    progress = RunProgress.of_snapshot(small_run())
    html = static.render_html(progress, layout_for(progress.shapes, engine="layers"), now=at(4.0).timestamp())
    assert "data-group" not in html
    assert ">order-1</text>" in html
