"""The answer forms' JavaScript (question_forms.js) in headless Chromium with a fake
model: inputs drawn from each field, defaults filled in, the values sent on submit as
JSON of the right types, and the kernel's field errors shown next to their inputs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import shutil
import time
from typing import Annotated, Literal

import pytest
from _js_harness import rendered
from _ui_snapshots import approval_run, at

from evkit.answers import form_fields
from evkit.listeners.ask import OpenQuestion
from evkit.notebook.forms import PendingWidget
from evkit.notebook.widget import RunWidget

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]


class Speed(enum.Enum):
    NORMAL = "normal"
    EXPRESS = "express"


@dataclasses.dataclass
class Order:
    """Check the order before it ships."""

    approve: bool
    boxes: int
    weight: Annotated[float, "In kg"]
    note: str = "none"
    carrier: Literal["ups", "dhl"] = "dhl"
    speed: Speed = Speed.NORMAL
    ship_on: dt.date | None = None
    at: dt.time | None = None


def question(workflow_id: str = "approval", step: str = "ask") -> OpenQuestion:
    return OpenQuestion(
        workflow_id=workflow_id,
        step_id=step,
        key="check-order",
        prompt="Ship the order?",
        model=Order,
        since=time.time(),
        fields=form_fields(Order),
    )


def test_run_widget_draws_a_form_per_question_with_defaults_and_sends_typed_values():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    widget.set_questions([question()])
    with rendered(widget) as page:
        form = '.evkit-question[data-question="approval/ask"]'
        assert page.inner_text(f"{form} .evkit-question-prompt") == "Ship the order?"
        assert page.inner_text(f"{form} .evkit-question-description") == "Check the order before it ships."
        assert page.get_attribute(f'{form} input[data-field="approve"]', "type") == "checkbox"
        assert page.get_attribute(f'{form} input[data-field="ship_on"]', "type") == "date"
        assert page.get_attribute(f'{form} input[data-field="at"]', "type") == "time"
        assert page.input_value(f'{form} input[data-field="note"]') == "none"
        assert page.input_value(f'{form} select[data-field="carrier"]') == '"dhl"'
        assert (
            page.inner_text(f'{form} .evkit-answer-field[data-field="weight"] .evkit-answer-help') == "In kg"
        )

        page.check(f'{form} input[data-field="approve"]')
        page.fill(f'{form} input[data-field="boxes"]', "3")
        page.fill(f'{form} input[data-field="weight"]', "2.5")
        page.select_option(f'{form} select[data-field="speed"]', label="express")
        page.fill(f'{form} input[data-field="ship_on"]', "2026-12-24")
        page.click(f"{form} .evkit-answer-submit")

        assert page.evaluate("window.evkitModel.sent") == [
            {
                "type": "answer",
                "workflow_id": "approval",
                "step": "ask",
                "values": {
                    "approve": True,
                    "boxes": 3,
                    "weight": 2.5,
                    "note": "none",
                    "carrier": "dhl",
                    "speed": "express",
                    "ship_on": "2026-12-24",
                },
            }
        ]
        assert page.is_disabled(f"{form} .evkit-answer-submit")


def test_field_errors_show_next_to_their_inputs_and_typed_values_stay():
    widget = PendingWidget()
    widget.set_questions([question("r-1"), question("r-2")])
    with rendered(widget) as page:
        assert page.locator(".evkit-question").count() == 2
        assert "run r-2 · step ask" in page.inner_text('[data-question="r-2/ask"] .evkit-question-meta')
        form = '[data-question="r-1/ask"]'
        page.fill(f'{form} input[data-field="boxes"]', "-1")
        page.click(f"{form} .evkit-answer-submit")
        page.evaluate(
            """() => window.evkitModel.set("answer_status", {"r-1/ask": {
                ok: false, text: "Not sent: fix the fields marked.", seq: 1,
                errors: [["boxes", "Input should be greater than 0"], ["", "Whole answer wrong"]]}})"""
        )
        error = f'{form} .evkit-answer-error[data-field="boxes"]'
        assert page.inner_text(error) == "Input should be greater than 0"
        assert page.get_attribute(f'{form} input[data-field="boxes"]', "aria-invalid") == "true"
        assert (
            page.inner_text(f"{form} .evkit-answer-status")
            == "Not sent: fix the fields marked. Whole answer wrong"
        )
        assert not page.is_disabled(f"{form} .evkit-answer-submit")
        # A push of the same questions keeps the forms and what was typed in them.
        page.evaluate('() => window.evkitModel.set("questions", [...window.evkitModel.get("questions")])')
        assert page.input_value(f'{form} input[data-field="boxes"]') == "-1"
        # An answered question leaves the list.
        page.evaluate('() => window.evkitModel.set("questions", window.evkitModel.get("questions").slice(1))')
        assert page.locator(".evkit-question").count() == 1


def test_pending_view_says_when_nothing_is_open_and_lists_other_runs_questions():
    widget = PendingWidget()
    widget.elsewhere = [
        {"workflow_id": "old", "step": "ask", "key": "k", "prompt": "Still there?", "model": "M", "since": 0}
    ]
    with rendered(widget) as page:
        assert page.inner_text(".evkit-questions-empty") == "No open questions."
        item = page.inner_text('.evkit-question-elsewhere[data-question="old/ask"]')
        assert item.startswith("Still there? — run old, step ask, key k, waiting since ")


def test_run_widget_keeps_no_band_for_questions_when_none_is_open():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget) as page:
        box = page.locator(".evkit-questions")
        assert box.bounding_box() is None  # not drawn: the toolbar follows the counts
        page.evaluate("(q) => window.evkitModel.set('questions', q)", [question().as_json()])
        assert box.is_visible()
        page.evaluate("() => window.evkitModel.set('questions', [])")
        assert box.bounding_box() is None
