"""The live widget in a real JupyterLab, driven by headless Debian chromium via Playwright.

Starts JupyterLab on a free loopback port, runs a copy of ``tests/browser/live.ipynb``
(a run waiting on a 4 s timer and a manual approval), and checks from the DOM that the
widget renders, updates while no cell runs, and that its Send button completes the wait.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import time
from collections.abc import Iterator

import pytest
from _jupyter_server import CHROMIUM_ARGS, JupyterServer, chromium as find_chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

HERE = pathlib.Path(__file__).parent
LIVE_NOTEBOOK = HERE / "live.ipynb"
# The notebook panel showing our file, found by path: JupyterLab may restore other tabs,
# so shell.currentWidget is not reliable (notes, section 5.3).
PANEL = (
    "Array.from(window.jupyterapp.shell.widgets('main'))"
    ".find(w => w.context && w.context.path === 'live.ipynb')"
)
PROMPTS = (
    f"Array.from({PANEL}.node.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent)"
)
# Completion is read from the prompts ("[3]:" vs "[*]:"), not from kernel.status, which can
# read idle while a cell still runs (notes, section 5.3).
ALL_CELLS_DONE = (
    f"() => {{ try {{ const ps = {PROMPTS}; "
    "return ps.length > 0 && ps.every(t => /\\[\\d+\\]/.test(t)); } catch (e) { return false; } }"
)
KERNEL_IDLE = (
    f"() => {{ try {{ return {PANEL}.sessionContext.session.kernel.status === 'idle'; }} "
    "catch (e) { return false; } }"
)


@pytest.fixture
def lab(tmp_path: pathlib.Path) -> Iterator[JupyterServer]:
    """JupyterLab serving a temporary directory that holds a copy of live.ipynb (the stored
    notebook is never opened, so running it cannot change it)."""
    with serve("jupyterlab", tmp_path) as server:
        shutil.copy(LIVE_NOTEBOOK, server.root / "live.ipynb")
        yield server


def test_widget_renders_updates_while_idle_and_send_button_completes_the_wait(
    lab: JupyterServer, tmp_path: pathlib.Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = find_chromium()
    started = time.monotonic()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            widget_errors: list[str] = []
            page.on(
                "console",
                lambda msg: (
                    widget_errors.append(msg.text)
                    if msg.type == "error" and ("evkit" in msg.text or "anywidget" in msg.text)
                    else None
                ),
            )
            page.goto(f"{lab.url}/lab/tree/live.ipynb?reset&token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            # More room for the widget (and its screenshot): close the file browser.
            page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); }")
            # Not `return ...execute(...)`: evaluate would await the whole run.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(ALL_CELLS_DONE, timeout=30_000)
            prompts_when_done = page.evaluate(f"() => {PROMPTS}")

            # (a) The widget rendered: the DAG with all five steps, and the event table.
            run = page.locator(".evkit-run")
            run.wait_for(timeout=15_000)
            page.wait_for_function(
                "() => document.querySelectorAll('.evkit-run .evkit-node').length === 5", timeout=15_000
            )
            timer_row = page.locator('.evkit-event-row[data-step="sleep"]')
            approve_row = page.locator('.evkit-event-row[data-step="ManualListener"]')
            timer_row.wait_for(timeout=15_000)
            approve_row.locator(".evkit-send").wait_for(timeout=15_000)

            # (b) The timer fires after every cell finished: the view changes from
            # "waiting" to "committed" while no cell runs (no prompt changes meanwhile).
            assert timer_row.get_attribute("data-state") == "waiting", (
                "the 4 s timer was no longer waiting when the cells finished; the browser or "
                "kernel was too slow to observe an idle update"
            )
            page.wait_for_selector(
                '.evkit-event-row[data-step="sleep"][data-state="committed"]', timeout=15_000
            )
            assert page.locator('.evkit-node[data-step="sleep"]').get_attribute("data-state") == "committed"
            assert page.evaluate(f"() => {PROMPTS}") == prompts_when_done, "a cell ran while we watched"
            assert run.get_attribute("data-status") == "WAITING"
            assert approve_row.get_attribute("data-state") == "waiting"

            # Event steps read as what the notebook wrote: the manual wait as its key, the
            # timer as its deadline, a local time of day (never epoch seconds).
            assert page.locator('.evkit-node[data-step="ManualListener"] text').text_content() == "approve"
            assert approve_row.locator(".evkit-col-label").inner_text() == "approve"
            deadline = timer_row.locator(".evkit-col-label").inner_text()
            assert re.search(r"\d{1,2}:\d{2}:\d{2}", deadline), deadline
            assert page.locator('.evkit-node[data-step="sleep"] text').text_content() == deadline
            timer_args = timer_row.locator(".evkit-col-args").inner_text()
            assert re.fullmatch(r'\["\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"\]', timer_args), (
                timer_args
            )

            # The README's picture is a bigger run's (test_widget_scale_lab.py).
            screenshot = tmp_path / "widget.png"
            run.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000  # a real picture, not an empty element

            # (c) Pressing Send on the waiting manual event completes that step and the run.
            approve_row.locator(".evkit-payload").fill('"approved by the browser test"')
            approve_row.locator(".evkit-send").click()
            page.wait_for_selector(
                '.evkit-event-row[data-step="ManualListener"][data-state="committed"]', timeout=15_000
            )
            page.wait_for_selector('.evkit-run[data-status="SUCCESSFUL"]', timeout=15_000)
            sent = page.locator('.evkit-send-status[data-step="ManualListener"]')
            assert "evkit-send-ok" in (sent.get_attribute("class") or ""), sent.inner_text()
            assert page.locator('.evkit-node[data-step="publish"]').get_attribute("data-state") == "done"
            assert "SUCCESSFUL" in page.locator(".evkit-run .evkit-header").inner_text()
            assert page.evaluate(f"() => {PROMPTS}") == prompts_when_done, "a cell ran while we watched"
            assert widget_errors == []
        finally:
            browser.close()
    assert time.monotonic() - started < 90
