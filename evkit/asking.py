"""``workflow.ask`` (a typed question as an event step) and ``workflow.pending()``.

The user-facing half of typed questions: making the ask step, and listing the open
questions of this process's runs. Validation is ``evkit.answers``, the listener and the
registry of open questions ``evkit.listeners.ask``; the forms are ``evkit.notebook``'s.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Sequence
from typing import Any, final

from evkit.answers import model_kind
from evkit.api import get_runtime
from evkit.dag import NO_DEFAULT, EventNode, wait_for_event
from evkit.engine import Engine
from evkit.errors import WorkflowDefinitionError
from evkit.listeners.ask import AskListener, OpenQuestion, Question, questions_of
from evkit.model import MAX_EVENT_KEY_CHARS
from evkit.runtime import Runtime

_KEY_CHARS = 60


def ask(
    model: type,
    prompt: str = "",
    *,
    key: str | None = None,
    timeout_seconds: float | None = None,
    default: object = NO_DEFAULT,
    name: str | None = None,
) -> EventNode:
    """An event step that asks a person a typed question; its value is the answer.

    ``workflow.ask(Refund, prompt="Approve the refund?")`` waits, like any event step,
    until an answer arrives: from the form the run's widget (and ``workflow.pending()``)
    shows, from ``workflow.send_event(workflow_id, key, {...})``, or from an HTTP POST to
    ``/events/{workflow_id}/{key}`` of ``workflow.serve_events()``. While the step waits,
    every answer is validated against ``model`` before anything is stored: an invalid
    one raises ``AnswerError`` (HTTP: 400 with the field errors) and stores nothing.
    The checkpoint records who answered and when (column ``payload`` of ``events``).

    Args:
        model: The answer's type: a dataclass, a pydantic model (if pydantic is
            installed; it then validates every kind) or a ``TypedDict``. Its fields make
            the form: text and number inputs, checkboxes for ``bool``, dropdowns for
            ``Literal`` and ``Enum``, date and time pickers, with defaults filled in and
            descriptions shown (a dataclass field's ``metadata={"description": ...}``,
            ``Annotated[T, "description"]``, or pydantic's ``Field(description=...)``).
        prompt: The question, shown above the form.
        key: The event key that answers it. Default: ``name`` if given, else the prompt
            made into a short key (``"Approve the refund?"`` -> ``approve-the-refund``),
            else the model's name in lower case.
        timeout_seconds: Give up after this long, as ``wait_for_event`` does.
        default: The value on timeout instead of raising ``EventTimeoutError``.
        name: The step's name in the views and its id in the run (made unique); without
            it the id is ``ask`` and the views show the prompt.

    Returns:
        A node whose value is the answer: an instance of ``model`` (a dict for a
        ``TypedDict``).

    Raises:
        WorkflowDefinitionError: ``model`` is not a dataclass, pydantic model or
            TypedDict, ``prompt`` or ``key`` is not a str, ``key`` is empty or too long,
            or an option is invalid as for ``wait_for_event`` (also a ``TypeError``).
    """
    try:
        model_kind(model)
    except TypeError as exc:
        raise WorkflowDefinitionError(f"workflow.ask(): {exc}") from None
    if not isinstance(prompt, str):
        raise WorkflowDefinitionError(f"workflow.ask(): `prompt` must be a str, got {prompt!r}.")
    if key is None:
        key = _key_from(name or prompt) or model.__name__.lower()
    if not isinstance(key, str) or not key or len(key) > MAX_EVENT_KEY_CHARS:  # type: ignore[redundant-expr]  # callers need not obey the types
        raise WorkflowDefinitionError(
            f"workflow.ask(): `key` must be a non-empty str of at most {MAX_EVENT_KEY_CHARS} "
            f"characters, got {key!r}."
        )
    node = wait_for_event(
        AskListener,
        key,
        Question(model=model, prompt=prompt),
        timeout_seconds=timeout_seconds,
        default=default,
        name=name,
    )
    node.default_name = "ask"
    return node


def _key_from(text: str) -> str:
    """A short readable key from a prompt or name: lower case, words joined by '-'."""
    words = re.findall(r"[0-9a-z]+", text.lower())
    key = ""
    for word in words:
        if len(key) + len(word) + 1 > _KEY_CHARS:
            break
        key = f"{key}-{word}" if key else word
    return key or "-".join(words)[:_KEY_CHARS]


@final
class PendingQuestions(Sequence[OpenQuestion]):
    """The open questions of this process's runs when ``workflow.pending()`` was called.

    A sequence of :class:`OpenQuestion` (the longest waiting first). Printed, it lists
    each with the ``send_event`` call that answers it; displayed in a notebook, it is a
    live widget with a form per question that drops the questions as they are answered.
    """

    def __init__(self, questions: Sequence[OpenQuestion], runtime: Runtime) -> None:
        self._questions = tuple(questions)
        self.runtime = runtime

    def __len__(self) -> int:
        return len(self._questions)

    def __getitem__(self, index: Any) -> Any:
        return self._questions[index]

    def __repr__(self) -> str:
        return _text(self._questions)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        """The live widget in a notebook (through ``evkit.notebook``, if installed)."""
        try:
            display = importlib.import_module("evkit.notebook.forms")
        except ImportError:
            return {"text/plain": repr(self)}
        return display.mimebundle(self, include=include, exclude=exclude)  # type: ignore[no-any-return]


def pending() -> PendingQuestions:
    """Every question an ask step of this process's runs is waiting to have answered.

    ``workflow.pending()`` as the last line of a cell shows them all with a form each,
    so a person answers every waiting run from one cell; ``print(workflow.pending())``
    lists them (run, step, key, prompt, waiting since) with the ``send_event`` call that
    answers each.

    Raises:
        RunStateError: The runtime was shut down.
    """
    runtime = get_runtime()

    async def read(engine: Engine) -> list[OpenQuestion]:
        return questions_of(engine.services).all()

    return PendingQuestions(runtime.call(read), runtime)


def _text(questions: Sequence[OpenQuestion]) -> str:
    if not questions:
        return "No open questions."
    lines = [f"{len(questions)} open question{'s' if len(questions) != 1 else ''}:"]
    for q in questions:
        since = dt.datetime.fromtimestamp(q.since, dt.UTC).isoformat(timespec="seconds")
        lines.append(f"- run {q.workflow_id!r}, step {q.step_id!r}, waiting since {since}")
        if q.prompt:
            lines.append(f"    {q.prompt}")
        example = ", ".join(f"{json.dumps(f['name'])}: {_placeholder(f)}" for f in q.fields)
        lines.append(f"    answer: workflow.send_event({q.workflow_id!r}, {q.key!r}, {{{example}}})")
    return "\n".join(lines)


_PLACEHOLDERS = {
    "checkbox": "true|false",
    "integer": "<int>",
    "number": "<number>",
    "date": '"YYYY-MM-DD"',
    "time": '"HH:MM"',
    "datetime": '"YYYY-MM-DDTHH:MM"',
    "text": '"..."',
}


def _placeholder(field: dict[str, object]) -> str:
    """What a field's value looks like in the ``send_event`` call of the text form."""
    options = field.get("options")
    if isinstance(options, list):
        return "|".join(json.dumps(option) for option in options)
    return _PLACEHOLDERS.get(str(field["input"]), "<JSON>")
