"""The static picture (nbconvert, GitHub, terminal IPython) and the display bundle."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from evkit import workflow
from evkit.notebook.display import mimebundle, run_widget
from evkit.notebook.static import MAX_DRAWN_STEPS
from evkit.notebook.viewmodel import STATE_COLORS

pytestmark = pytest.mark.slow  # each test runs a real workflow on a real store


@workflow.step
def double(x: int) -> int:
    return 2 * x


@workflow.step
def add(a: int, fired: object) -> int:
    return a + 1


def finished_run(workflow_id: str = "static"):
    handle = add.step(double.step(1), workflow.wait_for_event(workflow.TimerListener, 0.0)).run_async(
        workflow_id=workflow_id
    )
    handle.result(timeout=10)
    return handle


def test_static_picture_of_a_finished_run_colours_each_step_and_has_stable_text(runtime):
    handle = finished_run()

    data = mimebundle(handle, live=False)

    assert data["text/plain"] == "<evkit run 'static' SUCCESSFUL: 3 steps>"
    root = ET.fromstring(data["text/html"])  # well-formed: renderers get valid SVG
    ns = "{http://www.w3.org/2000/svg}"
    nodes = {g.get("data-step"): g for g in root.iter(f"{ns}g") if g.get("data-step")}
    assert set(nodes) == {"double", "TimerListener", "add"}
    for step_id, g in nodes.items():
        expected = "committed" if step_id == "TimerListener" else "done"
        assert g.get("data-state") == expected
        assert g.find(f"{ns}rect").get("fill") == STATE_COLORS[expected]
    assert len(list(root.iter(f"{ns}path"))) == 2  # the two edges into `add`
    rows = [tr.get("data-step") for tr in root.iter("tr") if tr.get("data-step")]
    assert rows == ["TimerListener"]  # the event table lists event steps only


def test_handle_shows_static_picture_outside_a_kernel(runtime):
    handle = finished_run("plain")
    data = handle._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html"}
    assert data["text/plain"] == "<evkit run 'plain' SUCCESSFUL: 3 steps>"


def test_live_bundle_has_widget_view_constant_text_and_a_static_fallback(runtime):
    handle = finished_run("live")

    data = mimebundle(handle, live=True)

    assert set(data) == {"application/vnd.jupyter.widget-view+json", "text/plain", "text/html"}
    assert data["text/plain"] == "<evkit RunWidget 'live'>"
    assert 'data-state="done"' in data["text/html"]
    again = mimebundle(handle, live=True)  # displaying twice shows the same widget
    assert (
        again["application/vnd.jupyter.widget-view+json"] == data["application/vnd.jupyter.widget-view+json"]
    )


def test_include_and_exclude_pick_mime_types(runtime):
    handle = finished_run("filtered")
    assert set(mimebundle(handle, include=["text/plain"], live=False)) == {"text/plain"}
    assert set(mimebundle(handle, exclude=["text/html"], live=False)) == {"text/plain"}


def test_a_closed_widget_is_replaced_on_the_next_display(runtime):
    handle = finished_run("closed")
    first = mimebundle(handle, live=True)["application/vnd.jupyter.widget-view+json"]
    run_widget(handle).close()

    second = mimebundle(handle, live=True)["application/vnd.jupyter.widget-view+json"]

    assert second["model_id"] != first["model_id"]
    assert run_widget(handle).comm is not None


def test_handle_of_a_closed_runtime_shows_one_line_instead_of_raising(store_path):
    with workflow.init(storage=store_path, loop="thread"):
        handle = finished_run("gone")
    try:
        data = mimebundle(handle, live=False)
    finally:
        workflow.shutdown()
    assert list(data) == ["text/plain"]
    assert data["text/plain"].startswith("<evkit run 'gone': cannot be shown (")
    assert "closed" in data["text/plain"]


def test_a_big_fan_out_draws_as_one_group_node_with_counts_and_one_page_of_events(runtime):
    @workflow.step
    def count(*payloads: object) -> int:
        return len(payloads)

    waits = [workflow.wait_for_event(workflow.TimerListener, 0.0) for _ in range(MAX_DRAWN_STEPS + 10)]
    handle = count.step(*waits).run_async(workflow_id="big")
    assert handle.result(timeout=60) == MAX_DRAWN_STEPS + 10

    html = mimebundle(handle, live=False)["text/html"]

    root = ET.fromstring(html)
    groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-group")]
    assert [(g.get("data-count"), g.get("data-counts")) for g in groups] == [
        (f"{MAX_DRAWN_STEPS + 10}", f"{MAX_DRAWN_STEPS + 10:,} committed")
    ]
    assert f"{MAX_DRAWN_STEPS + 11:,} steps:" in html
    assert f"{MAX_DRAWN_STEPS + 10:,} committed" in html
    assert "1 done" in html
    assert len([tr for tr in root.iter("tr") if tr.get("data-step")]) == 50
    assert f"and {MAX_DRAWN_STEPS + 10 - 50:,} more event steps" in html
    assert len(html) < 40_000


def test_a_dag_too_big_to_draw_even_grouped_gets_state_counts():
    from _ui_snapshots import chain

    from evkit.model import RunProgress
    from evkit.notebook.static import render_html

    progress = RunProgress.of_snapshot(chain(MAX_DRAWN_STEPS + 10))  # every step its own layer
    html = render_html(progress, None, now=0.0)
    assert "<svg" not in html
    assert f"{MAX_DRAWN_STEPS + 10:,} steps:" in html
