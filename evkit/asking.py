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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from evkit.answers import prepare_validator
from evkit.api import runtime_or_client
from evkit.client import ClientRuntime
from evkit.dag import NO_DEFAULT, EventNode, wait_for_event
from evkit.engine import Engine
from evkit.errors import WorkflowDefinitionError
from evkit.listeners.ask import AskListener, OpenQuestion, Question, questions_of
from evkit.model import MAX_EVENT_KEY_CHARS
from evkit.runtime import Runtime

if TYPE_CHECKING:
    import duckdb

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
            else the model's name in lower case. Two questions of a run that wait at
            once on the same key take its answers in the order they started waiting:
            give each its own ``key`` or ``name``.
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
        # Built now, off the event loop: the first validator of a process reads files.
        prepare_validator(model)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredQuestion:
    """A question the store says a run is waiting on, in a run this process does not execute.

    A run left RUNNING by a kernel that stopped (RESUMABLE), or executed by another
    process. It gets no form here: resume the run (``workflow.resume_async``) to answer
    it with one; an answer sent with ``send_event`` is kept and validated when the
    resumed step takes it.

    Attributes:
        workflow_id: The run.
        step_id: The ask step.
        key: The event key that answers it.
        prompt: The question's text.
        model: The name of the answer's model.
        since: When the step started waiting (epoch seconds).
    """

    workflow_id: str
    step_id: str
    key: str
    prompt: str
    model: str
    since: float

    def as_json(self) -> dict[str, object]:
        """The question as the pending widget shows it."""
        return {
            "workflow_id": self.workflow_id,
            "step": self.step_id,
            "key": self.key,
            "prompt": self.prompt,
            "model": self.model,
            "since": self.since,
        }


@final
class PendingQuestions(Sequence[OpenQuestion]):
    """The open questions of the store's runs when ``workflow.pending()`` was called.

    A sequence of :class:`OpenQuestion`: the questions of the runs this process executes,
    which can be answered here (the longest waiting first). ``elsewhere`` holds the
    questions of the store's other runs (:class:`StoredQuestion`). Printed, it lists
    both, each open one with the ``send_event`` call that answers it; displayed in a
    notebook, it is a live widget with a form per open question that drops the questions
    as they are answered. In a client of the store's owner (``runtime`` is a
    ``ClientRuntime``) the sequence is empty and ``elsewhere`` holds every open question,
    shown as text only.
    """

    def __init__(
        self,
        questions: Sequence[OpenQuestion],
        runtime: Runtime | ClientRuntime,
        elsewhere: Sequence[StoredQuestion] = (),
    ) -> None:
        self._questions = tuple(questions)
        self.runtime = runtime
        self.elsewhere = tuple(elsewhere)

    def __len__(self) -> int:
        return len(self._questions)

    def __getitem__(self, index: Any) -> Any:
        return self._questions[index]

    def __repr__(self) -> str:
        if isinstance(self.runtime, ClientRuntime):
            return _client_text(self.elsewhere, self.runtime)
        return _text(self._questions, self.elsewhere)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        """The live widget in a notebook (through ``evkit.notebook``, if installed)."""
        if isinstance(self.runtime, ClientRuntime):  # no engine here to follow: the text
            return {"text/plain": repr(self)}
        try:
            display = importlib.import_module("evkit.notebook.forms")
        except ImportError:
            return {"text/plain": repr(self)}
        return display.mimebundle(self, include=include, exclude=exclude)  # type: ignore[no-any-return]


def pending() -> PendingQuestions:
    """Every question an ask step of the store's runs is waiting to have answered.

    ``workflow.pending()`` as the last line of a cell shows them all, with a form each
    for the runs this process executes, so a person answers every waiting run from one
    cell; ``print(workflow.pending())`` lists them (run, step, key, prompt, waiting
    since) with the ``send_event`` call that answers each. Questions of the store's
    other runs (left by a kernel that stopped, or executed by another process) are
    listed too, without a form: resume the run to answer it here.

    In a client of the store's owner (``workflow.init`` on a store another process owns
    returned a ``ClientRuntime``), it lists the questions the store has open in every
    running run, read through the owner (``sql``), as text only: no forms, and the answer's
    fields are not known here (its model is named). Answer with ``workflow.send_event``:
    the owner checks the answer against the model before storing it.

    Raises:
        RunStateError: The runtime was shut down.
        StoreError: The store could not be read.
        OwnerUnreachableError: This process is a client and the owner did not answer.
    """
    runtime = runtime_or_client()
    if isinstance(runtime, ClientRuntime):
        return PendingQuestions((), runtime, _stored_questions(runtime.sql(_WAITING_ASKS).fetchall()))

    async def read(engine: Engine) -> tuple[list[OpenQuestion], list[StoredQuestion]]:
        live = questions_of(engine.services).all()
        stored = await engine.queue.read(_waiting_asks)
        elsewhere = [q for q in stored if engine.active(q.workflow_id) is None]
        return live, elsewhere

    live, elsewhere = runtime.call(read)
    return PendingQuestions(live, runtime, elsewhere)


# The ask steps the store has waiting in runs it records as running (the public views).
_WAITING_ASKS = """
SELECT e.workflow_id, e.step_id, e.args, epoch(e.waiting_at)
FROM events e JOIN workflows w USING (workflow_id)
WHERE e.listener = 'AskListener' AND e.state = 'waiting' AND w.status = 'RUNNING'
ORDER BY e.waiting_at, e.workflow_id, e.step_id
"""


def _waiting_asks(con: duckdb.DuckDBPyConnection) -> list[StoredQuestion]:
    """The ask steps the store has waiting in runs it records as running."""
    return _stored_questions(con.execute(_WAITING_ASKS).fetchall())


def _stored_questions(rows: Sequence[tuple[Any, ...]]) -> list[StoredQuestion]:
    """The rows of ``_WAITING_ASKS`` as questions (the key and prompt from the wait's args)."""
    found = []
    for workflow_id, step_id, args, since in rows:
        try:
            described = json.loads(args)
        except (TypeError, ValueError):
            described = {}
        if not isinstance(described, dict):
            described = {}
        found.append(
            StoredQuestion(
                workflow_id=workflow_id,
                step_id=step_id,
                key=str(described.get("key", "")),
                prompt=str(described.get("prompt", "")),
                model=str(described.get("model", "")),
                since=float(since or 0.0),
            )
        )
    return found


def _text(questions: Sequence[OpenQuestion], elsewhere: Sequence[StoredQuestion] = ()) -> str:
    if not questions and not elsewhere:
        return "No open questions."
    lines = [f"{len(questions)} open question{'s' if len(questions) != 1 else ''}:"]
    for q in questions:
        lines.append(f"- run {q.workflow_id!r}, step {q.step_id!r}, waiting since {_iso(q.since)}")
        if q.prompt:
            lines.append(f"    {q.prompt}")
        example = ", ".join(f"{json.dumps(f['name'])}: {_placeholder(f)}" for f in q.fields)
        lines.append(f"    answer: workflow.send_event({q.workflow_id!r}, {q.key!r}, {{{example}}})")
    if elsewhere:
        lines.append(
            f"{len(elsewhere)} more in runs this process does not execute (resume a run to answer "
            "it here with a form; an answer sent now is checked when the resumed step takes it):"
        )
        for s in elsewhere:
            lines.append(
                f"- run {s.workflow_id!r}, step {s.step_id!r}, key {s.key!r}, waiting since {_iso(s.since)}"
            )
            if s.prompt:
                lines.append(f"    {s.prompt}")
    return "\n".join(lines)


def _client_text(questions: Sequence[StoredQuestion], client: ClientRuntime) -> str:
    owner = client.owner.describe()
    if not questions:
        return f"No open questions (store {client.storage!r}, owned by {owner})."
    lines = [
        f"{len(questions)} open question{'s' if len(questions) != 1 else ''} in store "
        f"{client.storage!r}, owned by {owner} (answer with send_event: the owner checks the "
        "answer against its model; its forms are shown in the owner's notebook):"
    ]
    for s in questions:
        lines.append(f"- run {s.workflow_id!r}, step {s.step_id!r}, waiting since {_iso(s.since)}")
        if s.prompt:
            lines.append(f"    {s.prompt}")
        lines.append(f"    answer: workflow.send_event({s.workflow_id!r}, {s.key!r}, {{...}})  # a {s.model}")
    return "\n".join(lines)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


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
