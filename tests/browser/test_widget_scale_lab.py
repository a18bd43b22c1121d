"""The live widget of a 142-step run in a real JupyterLab (light and dark theme) and in
Notebook 7, driven by headless Debian chromium via Playwright.

Runs a copy of ``tests/browser/scale.ipynb`` (60 branches, 40 waits on keys, 20 timers
(each a deadline step and a wait), a fan-in; half the keys sent) and checks from the
DOM: fan-outs drawn as groups with the right state counts, labels readable (none
overlapping), a group opening on click, a step's details read from the store, the
timeline drawn from the store, the search, and the theme's colours. With
EVKIT_UPDATE_SCREENSHOT=1 the JupyterLab picture refreshes docs/screenshot-widget.png
(the README's).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from collections.abc import Iterator

import pytest
from _jupyter_server import CHROMIUM_ARGS, JupyterServer, chromium as find_chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(150)]

HERE = pathlib.Path(__file__).parent
NOTEBOOK = HERE / "scale.ipynb"
DOCS_SCREENSHOT = HERE.parent.parent / "docs" / "screenshot-widget.png"
PANEL = (
    "Array.from(window.jupyterapp.shell.widgets('main'))"
    ".find(w => w.context && w.context.path === 'scale.ipynb')"
)
PROMPTS = (
    f"Array.from({PANEL}.node.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent)"
)
ALL_CELLS_DONE = (
    f"() => {{ try {{ const ps = {PROMPTS}; "
    "return ps.length > 0 && ps.every(t => /\\[\\d+\\]/.test(t)); } catch (e) { return false; } }"
)
KERNEL_IDLE = (
    f"() => {{ try {{ return {PANEL}.sessionContext.session.kernel.status === 'idle'; }} "
    "catch (e) { return false; } }"
)
# Every drawn label's box and its node's box (the overlap and fit checks).
LABEL_BOXES = """() => Array.from(document.querySelectorAll(
    '.evkit-run .evkit-node text, .evkit-run .evkit-group text')).map((t) => {
  const r = t.getBoundingClientRect();
  const box = t.closest('g').querySelector('rect:not(.evkit-group-back)').getBoundingClientRect();
  return {text: t.textContent, x: r.x, y: r.y, w: r.width, h: r.height, bw: box.width};
})"""
WAITS = '.evkit-group[data-group="group:event:ManualListener@0"]'
TIMERS = '.evkit-group[data-group="group:event:sleep@1"]'  # after its sleep_deadline step
PREPS = '.evkit-group[data-group="group:function:prep@1"]'


@pytest.fixture(params=["jupyterlab", "notebook"])
def server(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JupyterServer]:
    """The app named by the parameter, serving a temporary copy of scale.ipynb (the stored
    notebook is never run)."""
    with serve(request.param, tmp_path) as srv:
        shutil.copy(NOTEBOOK, srv.root / "scale.ipynb")
        yield srv


def wait_for_counts(page, selector: str, counts: str) -> None:
    """Wait until the group node ``selector`` shows ``counts``; fail with what it shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    script = (
        f"() => (document.querySelector({selector!r}) || {{dataset: {{}}}}).dataset.counts === {counts!r}"
    )
    try:
        page.wait_for_function(script, timeout=30_000)
    except PlaywrightTimeout:
        shown = page.evaluate(
            "() => Array.from(document.querySelectorAll('.evkit-group'))"
            ".map(g => [g.dataset.group, g.dataset.counts])"
        )
        pytest.fail(f"{selector} never showed {counts!r}; the groups show {shown}")


def assert_labels_readable(page) -> set[str]:
    labels = page.evaluate(LABEL_BOXES)
    assert labels, "no label drawn"
    for label in labels:
        assert label["text"].strip(), "a box has no label"
        assert label["w"] <= label["bw"] + 0.5, f"label {label['text']!r} is wider than its box"
    ordered = sorted(labels, key=lambda b: b["x"])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b["x"] >= a["x"] + a["w"]:
                break
            overlap = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap <= 0.5, f"labels {a['text']!r} and {b['text']!r} overlap"
    return {label["text"] for label in labels}


def test_a_142_step_run_reads_as_groups_opens_details_and_timeline_in_both_themes(
    server: JupyterServer, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = find_chromium()
    lab = server.app == "jupyterlab"
    path = "lab/tree" if lab else "notebooks"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            errors: list[str] = []
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text)
                    if msg.type == "error" and ("evkit" in msg.text or "anywidget" in msg.text)
                    else None
                ),
            )
            page.goto(f"{server.url}/{path}/scale.ipynb?reset&token={server.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            if lab:
                page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); }")
            opened = time.monotonic()
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(ALL_CELLS_DONE, timeout=60_000)
            run = page.locator(".evkit-run")
            page.wait_for_selector(PREPS, timeout=15_000)
            shown_ms = (time.monotonic() - opened) * 1000

            # The fan-outs are groups with their state counts; the sends and short timers land.
            wait_for_counts(page, WAITS, "20 waiting, 20 committed")
            wait_for_counts(page, TIMERS, "10 waiting, 10 committed")
            assert page.get_attribute(PREPS, "data-counts") == "60 done"
            assert run.get_attribute("data-drawn") == "6"  # load, prep, waits, deadlines, timers, report
            texts = assert_labels_readable(page)
            assert {
                "load",
                "prep ×60",
                "ManualListener ×40",
                "sleep_deadline ×20",
                "sleep ×20",
                "report",
            } <= texts
            assert page.inner_text(".evkit-run .evkit-counts").startswith("142 steps:")

            # Search by key: the group is marked; Enter opens it and goes to the step.
            page.fill(".evkit-search", "order-7")
            assert page.get_attribute(WAITS, "data-match") == "1"
            page.press(".evkit-search", "Enter")
            node = page.locator('.evkit-node[data-step="ManualListener_7"]')
            assert node.get_attribute("data-current") == "true"
            assert node.locator("text").text_content() == "order-7"
            texts = assert_labels_readable(page)
            assert {"order-0", "order-39"} <= texts

            # Details of a step whose event arrived: the payload, read from the store.
            page.click('.evkit-node[data-step="ManualListener_8"]')
            page.wait_for_selector(".evkit-details-payload", timeout=15_000)
            assert '"approved": 8' in page.inner_text(".evkit-details-payload")
            assert "order-8 — ManualListener_8 (event step, committed)" in page.inner_text(
                ".evkit-details-title"
            )
            page.keyboard.press("Escape")

            # The timeline, from the store's rows (plot_timeline's): a row per box.
            page.click(".evkit-timeline-toggle")
            page.wait_for_selector('.evkit-timeline-row[data-row="load"]', timeout=15_000)
            assert (
                page.locator('.evkit-timeline-row[data-row="group:function:prep@1"] .evkit-bar').count() == 60
            )
            assert page.locator('.evkit-bar[data-phase="commit"]').count() >= 30

            shot = (
                DOCS_SCREENSHOT
                if lab and os.environ.get("EVKIT_UPDATE_SCREENSHOT") == "1"
                else tmp_path / "light.png"
            )
            page.click(".evkit-collapse")
            page.fill(".evkit-search", "")
            run.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000

            if lab:  # JupyterLab's dark theme: the widget's text and lines follow it
                before = page.evaluate("getComputedStyle(document.querySelector('.evkit-run')).color")
                page.evaluate(
                    "() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                    "{theme: 'JupyterLab Dark'}); }"
                )
                page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=15_000)
                page.wait_for_function(
                    f"() => getComputedStyle(document.querySelector('.evkit-run')).color !== {before!r}",
                    timeout=15_000,
                )
                assert page.evaluate("getComputedStyle(document.querySelector('.evkit-run')).color") == (
                    "rgba(255, 255, 255, 0.87)"
                )
                assert_labels_readable(page)
                run.screenshot(path=str(tmp_path / "dark.png"))
            assert errors == []
            with capsys.disabled():
                app = "JupyterLab" if lab else "Notebook 7"
                print(f"\n{app}: Run All -> widget with groups drawn in {shown_ms:.0f} ms (142 steps)")
        finally:
            browser.close()
