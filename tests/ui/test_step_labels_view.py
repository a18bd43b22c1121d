"""Labels of event steps in the views: the text of their nodes and their column in the
event table, with times in the viewer's zone (the kernel's for the static picture, the
browser's for the widget). Built from hand-made snapshots: no kernel, no engine."""

from __future__ import annotations

import dataclasses
import shutil
import xml.etree.ElementTree as ET

import pytest
from _ui_snapshots import approval_run, at

from evkit.model import RunProgress, RunSnapshot
from evkit.notebook import static, viewmodel
from evkit.notebook.layout import layout_for
from evkit.notebook.widget import RunWidget

NOW = at(4.0).timestamp()
SVG = "{http://www.w3.org/2000/svg}"
LONG = "approval of the quarterly report"


def labelled_run() -> RunSnapshot:
    """approval_run() as the engine now describes it: the manual wait labelled by its key,
    the timer by its deadline (12:00:10 UTC), and one wait with a long ``name=``."""
    run = approval_run()
    steps = {s.step_id: s for s in run.steps}
    approve = dataclasses.replace(steps["approve"], label="ok")
    review = dataclasses.replace(steps["approve"], step_id=LONG, name=LONG, label=LONG, inbox_key=None)
    publish = dataclasses.replace(steps["publish"], upstream=("timer", "approve", LONG))
    return dataclasses.replace(run, steps=(steps["load"], steps["timer"], approve, review, publish))


@pytest.mark.usefixtures("india_local_time")
def test_event_rows_carry_the_label_and_a_timers_deadline_for_the_browser_to_write():
    rows = {
        row["step"]: row for row in viewmodel.event_rows(RunProgress.of_snapshot(labelled_run()), now=NOW)
    }

    assert (rows["approve"]["label"], rows["approve"]["label_at"]) == ("ok", None)
    # 12:00:10 UTC in the kernel's zone, named: the static page may be read elsewhere.
    assert (rows["timer"]["label"], rows["timer"]["label_at"]) == (
        "Jan 01 17:30:10 IST",
        at(10.0).timestamp(),
    )
    assert viewmodel.relative(at(1.25), None) == "17:30:01.250"  # no run start: a local time of day


def test_node_text_is_the_label_cut_at_its_end_else_the_id_cut_at_its_start():
    assert viewmodel.node_text("approve", "ok") == "ok"
    assert viewmodel.node_text(LONG, LONG) == "approval of the quart…"  # 22 characters
    assert viewmodel.node_text("then_wait/ManualListener_10") == "…ait/ManualListener_10"


@pytest.mark.usefixtures("india_local_time")
def test_static_picture_writes_labels_in_the_nodes_and_the_event_table():
    progress = RunProgress.of_snapshot(labelled_run())

    html = static.render_html(progress, layout_for(progress.shapes, engine="layers"), now=NOW)

    root = ET.fromstring(html)
    texts = {
        g.get("data-step"): g.find(f"{SVG}text").text for g in root.iter(f"{SVG}g") if g.get("data-step")
    }
    assert texts == {
        "load": "load",
        "timer": "Jan 01 17:30:10 IST",
        "approve": "ok",
        LONG: "approval of the quart…",
        "publish": "publish",
    }
    head = [th.text for th in root.iter("th")]
    assert head[:3] == ["step", "label", "listener"]
    labels = {tr.get("data-step"): tr.findall("td")[1].text for tr in root.iter("tr") if tr.get("data-step")}
    assert labels == {"timer": "Jan 01 17:30:10 IST", "approve": "ok", LONG: LONG}


def test_widget_sends_labels_with_times_as_epoch_seconds_and_follows_their_changes():
    run = labelled_run()
    widget = RunWidget.from_snapshot(run, now=NOW, layout_engine="layers")

    assert widget.labels == {"timer": {"at": at(10.0).timestamp()}, "approve": "ok", LONG: LONG}
    assert {row["step"]: row["label"] for row in widget.events}["approve"] == "ok"

    renamed = tuple(dataclasses.replace(s, label="ok-2") if s.step_id == "approve" else s for s in run.steps)
    widget.apply_snapshot(dataclasses.replace(run, steps=renamed), now=NOW)
    assert widget.labels["approve"] == "ok-2"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_browser_writes_labels_in_nodes_and_table_and_times_in_its_own_zone():
    from _js_harness import rendered

    widget = RunWidget.from_snapshot(labelled_run(), now=NOW, layout_engine="layers")
    with rendered(widget, timezone_id="Asia/Tokyo") as page:

        def node(step: str) -> str:
            return page.text_content(f'.evkit-node[data-step="{step}"] text') or ""

        def label_cell(step: str) -> str:
            return page.inner_text(f'tr[data-step="{step}"] .evkit-col-label')

        # 12:00:10 UTC is 21:00:10 in Tokyo: the browser's zone, not the kernel's.
        assert node("timer") == label_cell("timer") == "Jan 1, 09:00:10 PM"
        assert node("approve") == label_cell("approve") == "ok"
        assert node(LONG) == "approval of the quart…"
        assert label_cell(LONG) == LONG
        assert node("load") == "load"  # function steps show their ids
        assert page.inner_text('tr[data-step="timer"] .evkit-col-waiting') == "+0.500 s"

        page.evaluate("""() => window.evkitModel.set("labels", {approve: "ok-2"})""")
        assert node("approve") == "ok-2"
        assert node("timer") == "timer"  # no label any more: the id
