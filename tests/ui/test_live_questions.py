"""A run widget bound to a real run with a ``workflow.ask`` step: the open question appears
in its ``questions`` trait, a refused answer comes back as field errors, a valid one
completes the step, and the question leaves the widget (written from the engine thread)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import evkit
from evkit import workflow
from evkit.notebook.display import run_widget
from evkit.notebook.forms import pending_widget

pytestmark = pytest.mark.slow  # real runs on a real store


@dataclasses.dataclass
class Approval:
    approve: bool
    reviewer: str


@workflow.step
def publish(approval: Approval) -> str:
    return f"published: {approval.approve} by {approval.reviewer}"


def test_widget_shows_the_question_and_its_answer_completes_the_step(runtime, until, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "ana")
    handle = publish.step(workflow.ask(Approval, prompt="Publish Q3?")).run_async(workflow_id="q3")
    widget = run_widget(handle)
    writers: set[str] = set()
    widget.observe(
        lambda _: writers.add(threading.current_thread().name), names=["questions", "answer_status"]
    )
    until(lambda: widget.questions, what="the question")
    [question] = widget.questions
    assert (question["workflow_id"], question["step"], question["key"], question["prompt"]) == (
        "q3",
        "ask",
        "publish-q3",
        "Publish Q3?",
    )
    assert [f["name"] for f in question["fields"]] == ["approve", "reviewer"]

    widget._handle_custom_msg(
        {"type": "answer", "workflow_id": "q3", "step": "ask", "values": {"approve": "maybe"}}, []
    )
    until(lambda: "q3/ask" in widget.answer_status, what="the verdict")
    verdict = widget.answer_status["q3/ask"]
    assert verdict["ok"] is False
    assert [field for field, _ in verdict["errors"]] == ["approve", "reviewer"]
    assert widget.states.get("ask") == "waiting"

    values = {"approve": True, "reviewer": "ana"}
    widget._handle_custom_msg({"type": "answer", "workflow_id": "q3", "step": "ask", "values": values}, [])
    assert handle.result(timeout=10) == "published: True by ana"
    until(lambda: widget.answer_status["q3/ask"]["ok"], what="the accepted verdict")
    assert widget.answer_status["q3/ask"]["text"] == "answered by ana"
    until(lambda: widget.questions == [], what="the question to leave")
    assert writers <= {"evkit-engine"}


def test_pending_widget_follows_questions_as_they_open_and_close(runtime, until):
    first = workflow.ask(Approval, prompt="First?").run_async(workflow_id="one")
    widget = pending_widget(runtime, [])
    until(lambda: [q["workflow_id"] for q in widget.questions] == ["one"], what="the first question")
    second = workflow.ask(Approval, prompt="Second?").run_async(workflow_id="two")
    until(lambda: [q["workflow_id"] for q in widget.questions] == ["one", "two"], what="the second question")
    workflow.send_event("one", "first", {"approve": True, "reviewer": "bo"})
    assert first.result(timeout=10) == Approval(approve=True, reviewer="bo")
    until(lambda: [q["workflow_id"] for q in widget.questions] == ["two"], what="the answered one to leave")
    evkit.cancel("two")
    with pytest.raises(evkit.WorkflowCancellationError):
        second.result(timeout=10)
    until(lambda: widget.questions == [], what="the cancelled one to leave")
