"""Typed questions (``workflow.ask``): the listener, and the registry of open questions.

An ask step waits on an inbox key like a ``ManualListener`` wait; while it waits, its
question is open in the engine's :class:`Questions` registry, which ``send_event``, the
HTTP inbox and the widget ask to validate an answer *before* it is stored (an invalid
one is refused and stores nothing). A valid answer travels through the inbox as an
:class:`Answer` (the instance, who gave it, when); its checkpoint shows all three.
Validation itself is ``evkit.answers``; this module does no I/O of its own.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import final

from evkit import codec
from evkit.answers import (
    Answer as Answer,  # re-exported: answers stored before it moved name it here
    InvalidAnswer,
    answer_json,
    form_fields,
    json_schema,
    readable_answer,
    validate_answer,
)
from evkit.context import get_event_context
from evkit.errors import AnswerError
from evkit.listeners.base import WaitDescription
from evkit.listeners.manual import ManualListener
from evkit.services import Service, ServiceRegistry

logger = logging.getLogger("evkit")


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    """What an ask step asks: its answer's model and the prompt (the step's poll argument)."""

    model: type
    prompt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenQuestion:
    """A question an ask step is waiting to have answered.

    Attributes:
        workflow_id: The run.
        step_id: The ask step.
        key: The event key that answers it (``send_event(workflow_id, key, {...})``).
        prompt: The question's text.
        model: The answer's model class.
        since: When the step started waiting (epoch seconds).
        attempt: The wait's attempt (one more after each resume).
    """

    workflow_id: str
    step_id: str
    key: str
    prompt: str
    model: type
    since: float
    attempt: int = 1
    fields: list[dict[str, object]] = field(default_factory=list, compare=False)

    def as_json(self) -> dict[str, object]:
        """The question as the widgets get it: plain JSON, its form's fields included."""
        return {
            "workflow_id": self.workflow_id,
            "step": self.step_id,
            "key": self.key,
            "prompt": self.prompt,
            "model": self.model.__name__,
            "description": json_schema(self.model).get("description"),
            "since": self.since,
            "attempt": self.attempt,
            "fields": self.fields,
        }


def notebook_user() -> str:
    """Who answers from this process: ``notebook:<user>``.

    JupyterHub's user when the kernel runs under JupyterHub, else the login name.
    """
    user = os.environ.get("JUPYTERHUB_USER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name (a container's bare uid)
            user = ""
    return f"notebook:{user}" if user else "notebook"


@final
class Questions(Service):
    """The open questions of one engine's runs, by ``(workflow_id, key)``; lives on its loop."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], list[OpenQuestion]] = {}
        self._watchers: list[Callable[[], None]] = []

    def open(self, question: OpenQuestion) -> None:
        """Register ``question`` as waiting (its ask step's poll started)."""
        self._open.setdefault((question.workflow_id, question.key), []).append(question)
        self._changed()

    def close(self, question: OpenQuestion) -> None:
        """Forget ``question`` (its poll ended: answered, cancelled or timed out)."""
        waiting = self._open.get((question.workflow_id, question.key), [])
        if question in waiting:
            waiting.remove(question)
            if not waiting:
                del self._open[(question.workflow_id, question.key)]
            self._changed()

    def find(self, workflow_id: str, key: str) -> OpenQuestion | None:
        """The question that the next answer to ``key`` of the run goes to, if one is open."""
        waiting = self._open.get((workflow_id, key))
        return waiting[0] if waiting else None

    def all(self, workflow_id: str | None = None) -> list[OpenQuestion]:
        """The open questions (of one run, if given), the longest waiting first."""
        found = [q for waiting in self._open.values() for q in waiting]
        if workflow_id is not None:
            found = [q for q in found if q.workflow_id == workflow_id]
        return sorted(found, key=lambda q: (q.since, q.workflow_id, q.step_id))

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (on the loop) whenever a question opens or closes.

        Returns:
            A function that unsubscribes.
        """
        self._watchers.append(callback)

        def unsubscribe() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unsubscribe

    def check(self, workflow_id: str, key: str, payload: object, *, answered_by: str | None) -> object:
        """What the inbox should store for ``payload`` sent to ``key`` of the run.

        With a question open on the key: the validated :class:`Answer`. Without one, the
        payload as it is (an ask step that takes it later validates it then).

        Raises:
            InvalidAnswer: A question is open on the key and the payload does not fit it.
        """
        question = self.find(workflow_id, key)
        if question is None or isinstance(payload, Answer):
            return payload
        value = validate_answer(question.model, payload)
        return Answer(value=value, answered_by=answered_by, answered_at=dt.datetime.now(dt.UTC).timestamp())

    def release_run(self, workflow_id: str) -> None:
        """Forget the run's questions (its execution ended)."""
        before = len(self._open)
        self._open = {k: v for k, v in self._open.items() if k[0] != workflow_id}
        if len(self._open) != before:
            self._changed()

    def _changed(self) -> None:
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:  # a broken view must not break the run
                logger.warning("evkit: a watcher of open questions failed", exc_info=True)


def questions_of(services: ServiceRegistry) -> Questions:
    """The engine's :class:`Questions`, made on first use."""
    return services.get_or_add(Questions, Questions)


class AskListener(ManualListener):
    """Waits for a valid answer to a question: made by ``workflow.ask``; the event is the answer.

    The poll arguments are the event key and the :class:`Question`. While it waits the
    question is open (``workflow.pending()``, the run's widget), and answers sent to the
    key are validated before they are stored. An answer stored before the question was
    open (sent before the step started waiting) is validated when the step takes it: an
    invalid one is skipped with a warning and the step waits on.
    """

    def __init__(self) -> None:
        super().__init__()
        self._model: type | None = None
        self._answered_by: str | None = None
        self._answered_at: float | None = None

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The key (as for a manual wait), the prompt as label, and readable arguments."""
        key = kwargs.get("key", args[0] if args else None)
        question = kwargs.get("question", args[1] if len(args) > 1 else None)
        if not isinstance(key, str) or not isinstance(question, Question):
            return super().describe_wait(args, kwargs, now=now)
        text = codec.readable({"key": key, "prompt": question.prompt, "model": question.model.__qualname__})
        return WaitDescription(inbox_key=key, label=question.prompt or key, args_text=text)

    async def poll_for_event(self, key: str, question: Question) -> object:  # type: ignore[override]
        """Open the question, then return the first valid answer to it (an instance of its model)."""
        context = get_event_context()
        questions = questions_of(context.services)
        self._model = question.model
        opened = OpenQuestion(
            workflow_id=context.workflow_id,
            step_id=context.step_id,
            key=key,
            prompt=question.prompt,
            model=question.model,
            since=context.clock.now(),
            attempt=context.attempt,
            fields=form_fields(question.model),
        )
        questions.open(opened)
        try:
            while True:
                payload = await super().poll_for_event(key)
                if isinstance(payload, Answer):
                    self._answered_by, self._answered_at = payload.answered_by, payload.answered_at
                    payload = payload.value
                else:
                    self._answered_by, self._answered_at = None, context.clock.now()
                try:
                    return validate_answer(question.model, payload)
                except InvalidAnswer as exc:
                    # Sent before the question was open, so never checked: skipping it
                    # loses nothing that could be used, and keeps the question open.
                    logger.warning(
                        "evkit: run %r, step %r skipped an answer sent to key %r before the question "
                        "was open: %s. It waits for a valid one.",
                        context.workflow_id,
                        context.step_id,
                        key,
                        exc,
                    )
        finally:
            questions.close(opened)

    def readable(self, event: object) -> str:
        """The answer, who gave it and when, as JSON (column ``payload`` of ``events``).

        ``{"answer": {...}, "answered_by": "notebook:alice", "answered_at": "2026-...Z"}``.
        """
        if self._model is None:
            return super().readable(event)
        return readable_answer(answer_json(self._model, event), self._answered_by, self._answered_at)


def answer_error(exc: InvalidAnswer, question: OpenQuestion, *, call: str) -> AnswerError:
    """The ``AnswerError`` for an answer ``question`` refused, in the words of ``call``.

    ``call`` is how the user sent it, e.g. ``send_event('r-1', 'approve', ...)``.
    """
    problems = "; ".join(f"`{field}`: {message}" if field else message for field, message in exc.errors)
    expected = ", ".join(
        f"{f['name']} ({f['input']}{', required' if f['required'] else ''})" for f in question.fields
    )
    return AnswerError(
        f"{call}: the answer to {question.prompt or question.key!r} (step {question.step_id!r} of run "
        f"{question.workflow_id!r}, key {question.key!r}) does not fit {question.model.__qualname__}: "
        f"{problems}. Expected fields: {expected or 'none'}. Nothing was stored; send a corrected answer.",
        workflow_id=question.workflow_id,
        key=question.key,
        errors=exc.errors,
    )
