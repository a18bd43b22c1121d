"""A ``workflow.ask`` form in a real JupyterLab, driven by headless Debian chromium.

Runs a copy of ``tests/browser/ask.ipynb`` (a run waiting on a typed question, shown by
its widget and by ``workflow.pending()``), then, as a person would: fills the form,
submits an invalid amount, reads the error next to the field, fixes it, submits again,
and sees the run finish and the pending view empty.
"""

from __future__ import annotations

import pathlib
import shutil
import time
from collections.abc import Iterator

import pytest
from _jupyter_server import CHROMIUM_ARGS, JupyterServer, chromium as find_chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(120)]

ASK_NOTEBOOK = pathlib.Path(__file__).parent / "ask.ipynb"
PANEL = (
    "Array.from(window.jupyterapp.shell.widgets('main'))"
    ".find(w => w.context && w.context.path === 'ask.ipynb')"
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


@pytest.fixture
def lab_server(tmp_path: pathlib.Path) -> Iterator[JupyterServer]:
    """JupyterLab serving an empty temporary directory."""
    with serve("jupyterlab", tmp_path) as server:
        yield server


def test_ask_form_shows_the_error_of_an_invalid_answer_and_a_fixed_one_continues_the_run(
    lab_server: JupyterServer,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("pydantic", reason="the notebook's model is a pydantic model")
    chromium = find_chromium()
    lab = lab_server
    shutil.copy(ASK_NOTEBOOK, lab.root / "ask.ipynb")  # a copy: running it cannot change the stored one
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
            page.goto(f"{lab.url}/lab/tree/ask.ipynb?reset&token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(ALL_CELLS_DONE, timeout=30_000)

            run = page.locator(".evkit-run")
            form = run.locator('.evkit-question[data-question="browser-ask/ask"]')
            form.wait_for(timeout=15_000)
            pending = page.locator('.evkit-pending .evkit-question[data-question="browser-ask/ask"]')
            pending.wait_for(timeout=15_000)
            assert form.locator(".evkit-question-prompt").inner_text() == "Approve the refund for order 1234?"
            amount_help = form.locator('.evkit-answer-field[data-field="amount"] .evkit-answer-help')
            help_text = amount_help.inner_text()
            assert help_text == "How much to pay back, in EUR"
            assert form.locator('select[data-field="channel"]').input_value() == '"card"'  # the default

            # An invalid amount: the kernel refuses it, the error shows next to the field.
            form.locator('input[data-field="approve"]').check()
            form.locator('input[data-field="amount"]').fill("-5")
            form.locator(".evkit-answer-submit").click()
            error = form.locator('.evkit-answer-error[data-field="amount"]')
            page.wait_for_function(
                "(el) => el.textContent.length > 0", arg=error.element_handle(), timeout=15_000
            )
            assert error.inner_text() == "Input should be greater than 0"
            assert form.locator('input[data-field="amount"]').get_attribute("aria-invalid") == "true"
            assert run.get_attribute("data-status") == "WAITING"
            assert page.locator('.evkit-event-row[data-step="ask"]').get_attribute("data-state") == "waiting"

            # Fixed: the answer is stored, the step commits, the run finishes, and the
            # question leaves both views.
            form.locator('input[data-field="amount"]').fill("25")
            form.locator('select[data-field="channel"]').select_option(label="voucher")
            form.locator(".evkit-answer-submit").click()
            page.wait_for_selector('.evkit-run[data-status="SUCCESSFUL"]', timeout=15_000)
            ask_row = page.locator('.evkit-event-row[data-step="ask"]')
            assert ask_row.get_attribute("data-state") == "committed"
            page.wait_for_selector(".evkit-pending .evkit-questions-empty", timeout=15_000)
            assert run.locator(".evkit-question").count() == 0
            assert widget_errors == []
        finally:
            browser.close()
    assert time.monotonic() - started < 90
