"""The widget at 10, 100, 1,000 and 10,000 steps in headless Chromium, in JupyterLab's
light and dark themes (its own theme CSS, loaded into the page), with a fake model.

Checks what a person needs from the picture (every box labelled, no two labels overlap,
group counts right, the details panel filled), keeps each screenshot, and measures and
prints the browser's side: first render, one update batch, and a 10,000-step run."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from _js_harness import ARGS, data_state
from _scale_runs import fan_out, small_run
from _ui_snapshots import at

from evkit.model import RunSnapshot, StepSnapshot
from evkit.notebook.widget import RunWidget

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]

THEMES = pathlib.Path(sys.prefix) / "share" / "jupyter" / "lab" / "themes" / "@jupyterlab"
THEME_CSS = {
    "light": THEMES / "theme-light-extension" / "index.css",
    "dark": THEMES / "theme-dark-extension" / "index.css",
}

# Renders like _js_harness's page, and also times the first render up to the next frame
# (style, layout and paint included), as a person waits for it.
PAGE_SCRIPT = """
async ([code, css, theme, state]) => {
  for (const text of [theme, css]) {
    const style = document.createElement("style");
    style.textContent = text;
    document.head.appendChild(style);
  }
  document.body.style.background = "var(--jp-layout-color0, #fff)";
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const mod = await import(url);
  const handlers = {};
  const model = {
    sent: [],
    get: (k) => state[k],
    set(k, v) { state[k] = v; for (const f of handlers["change:" + k] || []) f(); },
    on(ev, f) { (handlers[ev] ||= []).push(f); },
    off(ev, f) { handlers[ev] = (handlers[ev] || []).filter((g) => g !== f); },
    send(content) { this.sent.push(content); },
  };
  const el = document.createElement("div");
  el.style.width = "1100px";
  document.body.appendChild(el);
  const t0 = performance.now();
  mod.default.render({ model, el });
  el.getBoundingClientRect();
  window.renderMs = performance.now() - t0;
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  window.frameMs = performance.now() - t0;
  window.evkitModel = model;
}
"""

# Every drawn label's box, and its node's box: for the overlap and fit checks.
LABEL_BOXES = """() => Array.from(document.querySelectorAll(
    '.evkit-node text, .evkit-group text')).map((t) => {
  const r = t.getBoundingClientRect();
  const box = t.closest('g').querySelector('rect:not(.evkit-group-back)').getBoundingClientRect();
  return {text: t.textContent, x: r.x, y: r.y, w: r.width, h: r.height,
          bx: box.x, bw: box.width, id: t.closest('g').dataset.step || t.closest('g').dataset.group};
})"""


@contextmanager
def themed(widget: RunWidget, theme: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    state = widget.get_state()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_content("<!doctype html><html><head></head><body></body></html>")
            theme_css = THEME_CSS[theme].read_text(encoding="utf-8")
            page.evaluate(PAGE_SCRIPT, [state["_esm"], state["_css"], theme_css, data_state(widget)])
            yield page
            assert errors == [], errors
        finally:
            browser.close()


def assert_labels_readable(page) -> list[dict]:
    labels = page.evaluate(LABEL_BOXES)
    assert labels, "nothing drawn"
    for label in labels:
        assert label["text"].strip(), f"box {label['id']} has no label"
        assert label["w"] <= label["bw"] + 0.5, f"label {label['text']!r} is wider than its box"
    ordered = sorted(labels, key=lambda b: b["x"])
    for i, a in enumerate(ordered):  # sweep: only labels that start before `a` ends can meet it
        for b in ordered[i + 1 :]:
            if b["x"] >= a["x"] + a["w"]:
                break
            overlap_y = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_y <= 0.5, f"labels {a['text']!r} and {b['text']!r} overlap"
    return labels


def sized(n: int) -> RunSnapshot:
    """A fan-out of exactly ``n`` steps (n >= 100): 2 timers, (n - 4) / 2 branches."""
    return fan_out((n - 4) // 2, timers=2)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("steps", [10, 100, 1000])
def test_screenshot_shows_readable_labels_group_counts_and_details(steps, theme, tmp_path):
    run = small_run() if steps == 10 else sized(steps)
    assert len(run.steps) == steps
    widget = RunWidget.from_snapshot(run, now=at(4.0).timestamp(), layout_engine="layers")
    with themed(widget, theme) as page:
        labels = assert_labels_readable(page)
        texts = {label["text"] for label in labels}
        if steps == 10:  # drawn step by step, with the names the user wrote
            assert page.locator(".evkit-group").count() == 0
            assert page.locator(".evkit-node").count() == 10
            assert {"order-0", "order-1", "order-2", "load", "report", "publish"} <= texts
        else:
            branches = (steps - 4) // 2
            third = branches * 2 // 3
            assert (
                page.get_attribute(".evkit-run", "data-drawn") == "6"
            )  # load, prep, 2 timers, waits, report
            waits = page.locator('.evkit-group[data-group="group:event:ManualListener@2"]')
            assert waits.get_attribute("data-count") == str(branches)
            assert waits.get_attribute("data-counts") == f"{branches - third:,} waiting, {third:,} committed"
            assert f"ManualListener ×{branches:,}" in texts
            assert f"prep ×{branches:,}" in texts
        assert page.inner_text(".evkit-counts").startswith(f"{steps:,} steps:")
        # Theme: the header's text takes JupyterLab's font colour (light on dark).
        colour = page.evaluate("getComputedStyle(document.querySelector('.evkit-header')).color")
        assert colour == ("rgba(0, 0, 0, 0.87)" if theme == "light" else "rgba(255, 255, 255, 0.87)"), colour

        step = "ManualListener_1"
        if steps > 10:
            page.fill(".evkit-search", "order-1")
            page.press(".evkit-search", "Enter")  # opens the group, goes to order-1
        page.click(f'.evkit-node[data-step="{step}"]')
        widget.show_details(step)
        page.evaluate(
            "([d]) => window.evkitModel.set('details', d)", [json.loads(json.dumps(widget.details))]
        )
        panel = page.locator(".evkit-details")
        assert "order-1 — ManualListener_1 (event step, " in panel.inner_text()
        assert page.inner_text(".evkit-details-listener") == "ManualListener"
        assert '"key": "order-1"' in page.inner_text(".evkit-details-arguments")
        times = page.locator(".evkit-details-times li").all_inner_texts()
        assert [t.split()[0] for t in times] == ["waiting", "received", "checkpointed", "committed"]
        if steps > 10:
            assert_labels_readable(page)  # the opened group reads too
        # EVKIT_SCREENSHOT_DIR=path keeps the pictures to look at; else a temporary path.
        shot = pathlib.Path(os.environ.get("EVKIT_SCREENSHOT_DIR", tmp_path)) / f"widget-{steps}-{theme}.png"
        page.locator(".evkit-run").screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000


def with_states(run: RunSnapshot, changes: dict[str, str]) -> RunSnapshot:
    steps = tuple(
        StepSnapshot(**{**{f: getattr(s, f) for f in s.__slots__}, "state": changes[s.step_id]})
        if s.step_id in changes
        else s
        for s in run.steps
    )
    return RunSnapshot(
        workflow_id=run.workflow_id,
        status=run.status,
        steps=steps,
        started_at=run.started_at,
        version=run.version + 1,
    )


def push(page, widget: RunWidget) -> float:
    """Apply the widget's current state as one push does (states, events, version) and
    time it in the page until the layout is done (ms)."""
    state = data_state(widget)
    return page.evaluate(
        """([s]) => {
            const m = window.evkitModel;
            const t0 = performance.now();
            for (const k of ["states", "events", "event_offset", "now", "version"]) m.set(k, s[k]);
            document.querySelector(".evkit-run").getBoundingClientRect();
            return performance.now() - t0;
        }""",
        [{k: state[k] for k in ("states", "events", "event_offset", "now", "version")}],
    )


def test_speed_first_render_update_batch_and_a_10000_step_run(capsys):
    run = sized(1000)
    widget = RunWidget.from_snapshot(run, now=at(4.0).timestamp(), layout_engine="layers")
    figures = []
    with themed(widget, "light") as page:
        render_ms, frame_ms = page.evaluate("[window.renderMs, window.frameMs]")
        batches = []
        waits = [s.step_id for s in run.steps if s.state == "waiting" and s.listener == "ManualListener"]
        widget.show_page(334)  # the table's page holds the waits that change: rows are rewritten
        for i in range(15):  # each push: 10 of the 166 waits receive their event
            run = with_states(run, dict.fromkeys(waits[i * 10 : i * 10 + 10], "received"))
            widget.apply_snapshot(run, now=at(5.0 + i).timestamp())
            batches.append(push(page, widget))
        assert (
            page.locator('.evkit-group[data-group="group:event:ManualListener@2"]').get_attribute(
                "data-counts"
            )
            == "16 waiting, 150 received, 332 committed"
        )
        figures.append(
            f"1,000 steps: first render {render_ms:.1f} ms ({frame_ms:.1f} ms to the first frame); "
            f"update batch median {statistics.median(batches):.2f} ms, max {max(batches):.2f} ms"
        )
        assert render_ms <= 300
        assert statistics.median(batches) <= 16

    big = sized(10_000)
    widget = RunWidget.from_snapshot(big, now=at(4.0).timestamp(), layout_engine="layers")
    with themed(widget, "light") as page:
        render_ms, frame_ms = page.evaluate("[window.renderMs, window.frameMs]")
        drawn = int(page.get_attribute(".evkit-run", "data-drawn"))
        assert drawn < 500
        open_ms = page.evaluate(
            """() => {
                const t0 = performance.now();
                document.querySelector('.evkit-group[data-group="group:event:ManualListener@2"]')
                    .dispatchEvent(new MouseEvent("click", {bubbles: true}));
                document.querySelector(".evkit-run").getBoundingClientRect();
                return performance.now() - t0;
            }"""
        )
        opened = int(page.get_attribute(".evkit-run", "data-drawn"))
        assert opened < 500  # the first 200 steps of the group, and a box for the rest
        assert page.locator(".evkit-group-name").all_text_contents()[-1] == "ManualL… ×4,798 more"
        search_ms = page.evaluate(
            """() => {
                const input = document.querySelector(".evkit-search");
                input.value = "order-4321";
                const t0 = performance.now();
                input.dispatchEvent(new Event("input"));
                input.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
                document.querySelector(".evkit-run").getBoundingClientRect();
                return performance.now() - t0;
            }"""
        )
        assert page.get_attribute('.evkit-node[data-step="ManualListener_4321"]', "data-current") == "true"
        batch = push(page, widget)
        figures.append(
            f"10,000 steps: first render {render_ms:.1f} ms ({frame_ms:.1f} ms to the first frame), "
            f"{drawn} boxes drawn; opening a group of 4,998 {open_ms:.1f} ms ({opened} boxes); "
            f"search + go to a step {search_ms:.1f} ms; update batch {batch:.2f} ms"
        )
        assert open_ms <= 300
        assert search_ms <= 300
    with capsys.disabled():
        print("\nwidget speed in Chromium (fake model):\n  " + "\n  ".join(figures))
