"""The widget's group nodes, zoom, search and timeline in headless Chromium (fake model).

Groups are computed twice, in Python for the static picture (evkit/notebook/grouping.py)
and in the widget's JavaScript: the first test checks that both group alike."""

from __future__ import annotations

import shutil

import pytest
from _js_harness import rendered
from _scale_runs import fan_out, small_run
from _ui_snapshots import approval_run, at, grid

from evkit.model import RunProgress
from evkit.notebook.grouping import group_steps
from evkit.notebook.widget import RunWidget

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]


def widget_of(snapshot):
    return RunWidget.from_snapshot(snapshot, now=at(4.0).timestamp(), layout_engine="layers")


def sent(page):
    return page.evaluate("window.evkitModel.sent")


def test_browser_groups_the_steps_python_groups():
    runs = [small_run(), fan_out(49, timers=1), fan_out(499, timers=6), grid(), approval_run()]
    with rendered(widget_of(approval_run())) as page:
        for run in runs:
            progress = RunProgress.of_snapshot(run)
            nodes = [{"id": i, "kind": k} for i, k, _ in progress.shapes]
            edges = [[u, i] for i, _, ups in progress.shapes for u in ups]
            js = page.evaluate(
                """([nodes, edges]) => {
                    const r = window.evkitModule.groupSteps(nodes, edges, new Set());
                    return [r.nodes.map((d) => [d.id, d.kind, d.members, d.group]), r.edges];
                }""",
                [nodes, edges],
            )
            python = group_steps(progress.shapes)
            assert js[0] == [[n.node_id, n.kind, list(n.members), n.is_group] for n in python.nodes], (
                run.workflow_id
            )
            assert js[1] == [list(e) for e in python.edges], run.workflow_id


def test_a_fan_out_draws_as_groups_with_state_counts_that_open_on_click():
    with rendered(widget_of(fan_out(60))) as page:
        assert page.get_attribute(".evkit-run", "data-drawn") == "4"  # load, prep, wait, report
        prep = page.locator('.evkit-group[data-group="group:function:prep@1"]')
        assert prep.get_attribute("data-count") == "60"
        assert prep.locator(".evkit-group-name").text_content() == "prep ×60"
        assert prep.get_attribute("data-counts") == "10 running, 50 done"
        assert prep.locator(".evkit-group-counts").text_content() == "50 done, 10 running"
        waits = page.locator('.evkit-group[data-group="group:event:ManualListener@2"]')
        assert waits.get_attribute("data-counts") == "20 waiting, 40 committed"
        assert page.inner_text(".evkit-counts").startswith("122 steps:")  # every step, not boxes
        assert page.is_disabled(".evkit-collapse")

        waits.click()
        assert page.locator(".evkit-node[data-in-group]").count() == 60
        assert page.locator('.evkit-node[data-step="ManualListener_7"] text').text_content() == "order-7"
        assert page.get_attribute(".evkit-run", "data-drawn") == "63"
        page.focus('.evkit-node[data-step="ManualListener_7"]')  # scrolls it into the view
        page.click('.evkit-node[data-step="ManualListener_7"]')
        assert sent(page)[-1] == {"type": "details", "step": "ManualListener_7"}

        page.click(".evkit-collapse")
        assert page.get_attribute(".evkit-run", "data-drawn") == "4"


def test_groups_open_from_the_keyboard_and_nodes_reached_by_tab_are_scrolled_into_view():
    with rendered(widget_of(fan_out(60))) as page:
        page.focus("svg.evkit-dag")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.step") == "load"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.group") == "group:function:prep@1"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.dataset.step") == "prep"  # focus on its first step
        for _ in range(40):
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.step") == "prep_40"
        box = page.locator("svg.evkit-dag").bounding_box()
        node = page.locator('.evkit-node[data-step="prep_40"] rect').bounding_box()
        assert box["y"] <= node["y"]
        assert node["y"] + node["height"] <= box["y"] + box["height"]


def test_search_marks_steps_by_key_and_enter_opens_their_group():
    with rendered(widget_of(fan_out(60))) as page:
        page.fill(".evkit-search", "order-17")
        assert page.inner_text(".evkit-search-count") == "1 match"
        assert (
            page.get_attribute('.evkit-group[data-group="group:event:ManualListener@2"]', "data-match") == "1"
        )
        page.press(".evkit-search", "Enter")
        node = '.evkit-node[data-step="ManualListener_17"]'
        assert page.get_attribute(node, "data-current") == "true"
        assert page.inner_text(".evkit-search-count") == "1 of 1: ManualListener_17"
        box = page.locator("svg.evkit-dag").bounding_box()
        rect = page.locator(f"{node} rect").bounding_box()
        centre = rect["y"] + rect["height"] / 2
        assert abs(centre - (box["y"] + box["height"] / 2)) < 2  # centred in the view

        page.fill(".evkit-search", "prep_1")  # by step id: prep_1, prep_10..19
        assert page.inner_text(".evkit-search-count") == "11 matches"
        page.press(".evkit-search", "Escape")
        assert page.inner_text(".evkit-search-count") == ""
        assert page.locator("[data-match]").count() == 0
        page.fill(".evkit-search", "nothing-like-this")
        assert page.inner_text(".evkit-search-count") == "no step matches"


def test_wheel_zooms_drag_pans_and_fit_shows_everything():
    with rendered(widget_of(fan_out(60))) as page:
        box = page.locator("svg.evkit-dag").bounding_box()
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        zoom = float(page.get_attribute(".evkit-run", "data-zoom"))
        page.mouse.wheel(0, -300)  # the DAG has no focus: the page scrolls, no zoom
        assert float(page.get_attribute(".evkit-run", "data-zoom")) == zoom

        page.locator(".evkit-group").first.click()  # 60 boxes, and the focus is in the DAG
        zoom = float(page.get_attribute(".evkit-run", "data-zoom"))
        box = page.locator("svg.evkit-dag").bounding_box()
        page.mouse.move(box["x"] + 20, box["y"] + 20)
        page.mouse.wheel(0, -300)
        assert float(page.get_attribute(".evkit-run", "data-zoom")) > zoom
        before = page.get_attribute(".evkit-viewport", "transform")
        page.mouse.move(box["x"] + 5, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 105, box["y"] + 90)
        page.mouse.up()
        after = page.get_attribute(".evkit-viewport", "transform")
        assert after != before
        page.click(".evkit-fit")
        drawing = page.locator(".evkit-viewport").bounding_box()
        box = page.locator("svg.evkit-dag").bounding_box()
        assert drawing["y"] >= box["y"] - 1
        assert drawing["y"] + drawing["height"] <= box["y"] + box["height"] + 1
        page.focus("svg.evkit-dag")
        fitted = float(page.get_attribute(".evkit-run", "data-zoom"))
        page.keyboard.press("+")
        assert float(page.get_attribute(".evkit-run", "data-zoom")) == pytest.approx(fitted * 1.25, rel=5e-3)


def test_timeline_asks_the_kernel_and_draws_a_row_per_box():
    widget = widget_of(fan_out(60))
    with rendered(widget) as page:
        assert not page.is_visible(".evkit-timeline")
        page.click(".evkit-timeline-toggle")
        assert sent(page)[-1] == {"type": "timeline", "open": True}
        widget._handle_custom_msg({"type": "timeline", "open": True}, [])  # the kernel's side
        assert widget.timeline_open
        page.evaluate("([t]) => window.evkitModel.set('timeline', t)", [widget.timeline])
        rows = page.locator(".evkit-timeline-row")
        assert [rows.nth(i).get_attribute("data-row") for i in range(rows.count())] == [
            "load",
            "group:function:prep@1",
            "group:event:ManualListener@2",
        ]
        assert page.locator('.evkit-bar[data-step="load"]').get_attribute("data-phase") == "run"
        assert (
            page.locator('.evkit-bar[data-step="ManualListener_3"]').count() == 3
        )  # wait, checkpoint, commit
        assert (
            page.locator('.evkit-timeline-row[data-row="load"] .evkit-timeline-label').text_content()
            == "load"
        )
        assert "+0 s" in page.locator(".evkit-timeline-axis").all_text_contents()[0]
        page.click(".evkit-timeline-toggle")
        assert sent(page)[-1] == {"type": "timeline", "open": False}
        assert not page.is_visible(".evkit-timeline")
