"""Answer forms of ``workflow.ask`` questions: the widget traits, and answering from them.

:class:`AnswerForms` adds the ``questions`` and ``answer_status`` traits and the "answer"
message to a widget (the run widget, the pending widget; their browser half is
assets/question_forms.js). :func:`submit_answer` validates a form's values in the kernel
and sends a valid answer through the inbox. :class:`PendingWidget` is what
``workflow.pending()`` shows. Nothing here blocks the engine's loop.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import traitlets

from evkit.answers import InvalidAnswer
from evkit.engine import Engine
from evkit.listeners.ask import Answer, OpenQuestion, notebook_user, questions_of
from evkit.runtime import Runtime

logger = logging.getLogger("evkit.notebook")

_ASSETS = pathlib.Path(__file__).parent / "assets"
FORMS_JS = (_ASSETS / "question_forms.js").read_text(encoding="utf-8")
FORMS_CSS = (_ASSETS / "question_forms.css").read_text(encoding="utf-8")
_PENDING_JS = (_ASSETS / "pending_widget.js").read_text(encoding="utf-8")

AnswerRequest = Callable[[str, str, dict[str, object]], None]
"""``callback(workflow_id, step_id, values)``: a form was submitted."""


def _as_is(value: object, _widget: object) -> object:
    return value  # plain JSON built here: no widget references to look for


class AnswerForms(traitlets.HasTraits):
    """Mixin for widgets that show answer forms (before the widget base class).

    ``questions`` holds :meth:`OpenQuestion.as_json` of each open question shown;
    ``answer_status`` maps ``"<workflow_id>/<step_id>"`` to the kernel's verdict on the
    last answer submitted: ``{"ok", "text", "errors": [[field, message], ...], "seq"}``.
    """

    questions: traitlets.List[Any] = traitlets.List().tag(sync=True, to_json=_as_is)
    answer_status = traitlets.Dict().tag(sync=True, to_json=_as_is)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._answer_request: AnswerRequest | None = None
        self._answer_seq = 0
        self.on_msg(self._on_answer_msg)  # type: ignore[attr-defined]  # a Widget method

    def set_questions(self, questions: Sequence[OpenQuestion]) -> None:
        """Show a form for each of ``questions`` (forms of questions still open are kept)."""
        shown = [q.as_json() for q in questions]
        if shown != self.questions:
            self.questions = shown

    def set_answer_status(
        self, workflow_id: str, step_id: str, *, ok: bool, text: str, errors: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Show the kernel's verdict on an answer next to its form (errors by field)."""
        self._answer_seq += 1
        verdict = {"ok": ok, "text": text, "errors": [list(e) for e in errors], "seq": self._answer_seq}
        self.answer_status = {**self.answer_status, f"{workflow_id}/{step_id}": verdict}

    def on_answer_request(self, callback: AnswerRequest | None) -> None:
        """Call ``callback(workflow_id, step_id, values)`` when a form is submitted.

        It runs on the thread the kernel handles widget messages on: it must only hand
        the request over, never block or write traits.
        """
        self._answer_request = callback

    def _on_answer_msg(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict) or content.get("type") != "answer":
            return
        workflow_id, step_id, values = content.get("workflow_id"), content.get("step"), content.get("values")
        if not (isinstance(workflow_id, str) and isinstance(step_id, str) and isinstance(values, dict)):
            return
        if self._answer_request is None:
            logger.warning("evkit: this view's forms are not live; the answer was not sent")
            return
        self._answer_request(workflow_id, step_id, values)


async def submit_answer(
    runtime: Runtime, widget: AnswerForms, workflow_id: str, step_id: str, values: dict[str, object]
) -> None:
    """Validate a form's ``values`` in the kernel, send a valid answer, show the verdict.

    Runs on the engine's loop. The answer is stored with the event id
    ``widget:<step>:<attempt>``, so a double submit answers once, and records the
    notebook user as who answered.
    """

    async def answer(engine: Engine) -> tuple[bool, str, tuple[tuple[str, str], ...]]:
        questions = questions_of(engine.services)
        question = next((q for q in questions.all(workflow_id) if q.step_id == step_id), None)
        if question is None:
            return False, f"Step {step_id!r} of run {workflow_id!r} is no longer waiting for an answer.", ()
        by = notebook_user()
        try:
            stored = questions.check(workflow_id, question.key, values, answered_by=by)
        except InvalidAnswer as exc:
            return False, "Not sent: fix the fields marked.", exc.errors
        assert isinstance(stored, Answer)
        await engine.inbox.send(
            workflow_id, question.key, stored, event_id=f"widget:{step_id}:{question.attempt}", source=by
        )
        return True, f"answered by {by.removeprefix('notebook:') or 'notebook'}", ()

    try:
        ok, text, errors = await runtime.acall(answer)
    except Exception as exc:  # a closed runtime or store: say so next to the form
        ok, text, errors = False, f"{type(exc).__name__}: {exc}".splitlines()[0], ()
    widget.set_answer_status(workflow_id, step_id, ok=ok, text=text, errors=errors)


class PendingWidget(AnswerForms, anywidget.AnyWidget):
    """The forms of every open question of a runtime's runs (``workflow.pending()``)."""

    _esm = traitlets.Unicode(FORMS_JS + "\n" + _PENDING_JS).tag(sync=True)
    _css = traitlets.Unicode(FORMS_CSS).tag(sync=True)
    _anywidget_id = traitlets.Unicode(f"{__name__}.PendingWidget").tag(sync=True)
    # Questions of runs this process does not execute (no form), as when it was made.
    elsewhere: traitlets.List[Any] = traitlets.List().tag(sync=True, to_json=_as_is)

    def add_traits(self, **traits: traitlets.TraitType[Any, Any]) -> None:
        """Add only traits the class does not declare (see ``RunWidget.add_traits``)."""
        new = {name: trait for name, trait in traits.items() if not self.has_trait(name)}
        if new:
            super().add_traits(**new)

    def __repr__(self) -> str:
        return "<evkit PendingWidget>"  # constant: stable for nbval


def pending_widget(
    runtime: Runtime, questions: Sequence[OpenQuestion], elsewhere: Sequence[Any] = ()
) -> PendingWidget:
    """A :class:`PendingWidget` showing ``questions``, then kept current from the engine.

    It follows the engine's open questions until the widget is closed or collected.
    ``elsewhere`` (``StoredQuestion``s: runs this process does not execute) is listed
    below them as it was when the widget was made.
    """
    widget = PendingWidget()
    widget.set_questions(questions)
    widget.elsewhere = [q.as_json() for q in elsewhere]
    engine = runtime.engine()
    ref = weakref.ref(widget)
    tasks: set[asyncio.Task[None]] = set()

    def on_answer(workflow_id: str, step_id: str, values: dict[str, object]) -> None:
        def start() -> None:
            target = ref()
            if target is None:
                return
            task = engine.loop.create_task(submit_answer(runtime, target, workflow_id, step_id, values))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        engine.loop.call_soon_threadsafe(start)

    widget.on_answer_request(on_answer)

    def attach() -> None:
        registry = questions_of(engine.services)
        unsubscribe: Callable[[], None] | None = None

        def changed() -> None:
            target = ref()
            if target is None or target.comm is None:  # collected or closed: stop following
                if unsubscribe is not None:
                    unsubscribe()
                return
            target.set_questions(registry.all())

        unsubscribe = registry.subscribe(changed)
        changed()

    engine.loop.call_soon_threadsafe(attach)
    return widget


def mimebundle(pending: Any, include: object = None, exclude: object = None) -> dict[str, object]:
    """The display data of ``workflow.pending()``: its live widget in a kernel, else its text."""
    from evkit.notebook.display import _filter, in_live_kernel

    text = repr(pending)
    if not in_live_kernel():
        return _filter({"text/plain": text}, include, exclude)
    widget = pending_widget(pending.runtime, list(pending), pending.elsewhere)
    bundle = widget._repr_mimebundle_()
    data: dict[str, object] = dict(bundle[0]) if bundle else {}
    data["text/plain"] = text
    return _filter(data, include, exclude)
