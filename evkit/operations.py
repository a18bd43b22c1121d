"""What the public calls do on the engine's loop, shared by ``evkit.api`` and the control endpoint.

Each function takes the engine and runs on its loop: ``evkit.api`` carries it there from
the caller's thread; the control endpoint (``evkit.control_server``) awaits it for a
client in another process. So a client's ``get_status`` is the owner's, word for word.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from evkit import codec
from evkit.answers import InvalidAnswer
from evkit.engine import Engine
from evkit.errors import RunStateError, WorkflowCancellationError, WorkflowNotFoundError
from evkit.execution import failure_from_store
from evkit.listeners.ask import Questions, answer_error
from evkit.model import WorkflowStatus
from evkit.store.overview import list_runs, run_overview
from evkit.store.reads import step_metadata


def not_found_message(workflow_id: str, engine: Engine) -> str:
    """The message of a ``WorkflowNotFoundError`` for a run this store does not have."""
    return (
        f"Run {workflow_id!r} is not in store {engine.writer.path!r}. "
        "List the known runs with workflow.list_all()."
    )


async def status(engine: Engine, workflow_id: str) -> WorkflowStatus:
    """The run's status (see ``workflow.get_status``).

    Raises:
        WorkflowNotFoundError: The store has no such run.
    """
    active = engine.active(workflow_id)
    if active is not None:
        return active.status
    stored = await engine.load(workflow_id)
    if stored is None:
        raise WorkflowNotFoundError(not_found_message(workflow_id, engine), workflow_id=workflow_id)
    return engine.status_of(workflow_id, stored.status)


async def output(engine: Engine, workflow_id: str) -> object:
    """The run's output, waiting for a live run (see ``workflow.get_output``).

    Raises:
        WorkflowNotFoundError, StepFailedError, WorkflowCancellationError, RunStateError:
            As ``workflow.get_output`` documents.
    """
    active = engine.active(workflow_id)
    if active is not None:
        try:
            return await asyncio.shield(active.task)
        except Exception:
            active.outcome_retrieved = True  # raised here: not logged as well
            raise
    stored = await engine.load(workflow_id)
    if stored is None:
        raise WorkflowNotFoundError(not_found_message(workflow_id, engine), workflow_id=workflow_id)
    run_status = engine.status_of(workflow_id, stored.status)
    if run_status is WorkflowStatus.SUCCESSFUL:
        assert stored.output_blob is not None
        return codec.loads(stored.output_blob)
    if run_status is WorkflowStatus.FAILED:
        error = failure_from_store(workflow_id, stored.error_blob, stored.error_text)
        raise error from error.__cause__
    if run_status is WorkflowStatus.CANCELED:
        raise WorkflowCancellationError(f"Run {workflow_id!r} was cancelled.", workflow_id=workflow_id)
    raise RunStateError(
        f"Run {workflow_id!r} is {run_status.value} and has no output yet; resume it with "
        f"workflow.resume({workflow_id!r}).",
        workflow_id=workflow_id,
    )


async def metadata(engine: Engine, workflow_id: str, step_id: str | None) -> dict[str, object]:
    """Ray-style metadata of a run or one of its steps (see ``workflow.get_metadata``).

    Raises:
        WorkflowNotFoundError: The run (or the step in it) is unknown.
    """
    stored = await engine.load(workflow_id)
    if stored is None:
        raise WorkflowNotFoundError(not_found_message(workflow_id, engine), workflow_id=workflow_id)
    run_status = engine.status_of(workflow_id, stored.status)
    user = json.loads(stored.user_metadata) if stored.user_metadata else {}
    if step_id is None:
        return {
            "workflow_id": workflow_id,
            "status": run_status.value,
            "user_metadata": user or {},
            "stats": {
                "start_time": stored.created_at,
                "end_time": stored.updated_at if run_status.is_final else None,
            },
        }
    stats = await engine.queue.read(step_metadata, workflow_id, step_id)
    dag = codec.loads(stored.dag_blob)
    flat = {s.step_id: s for s in dag.steps}  # type: ignore[attr-defined]
    if stats is None and step_id not in flat:
        raise WorkflowNotFoundError(
            f"Run {workflow_id!r} has no step {step_id!r}. Its steps: {', '.join(map(repr, flat))}.",
            workflow_id=workflow_id,
        )
    options = flat[step_id].options if step_id in flat else None
    return {
        "workflow_id": workflow_id,
        "step_id": step_id,
        "state": (stats or {}).get("state"),
        "attempts": (stats or {}).get("attempts", 0),
        "error": (stats or {}).get("error"),
        "step_options": {
            "max_retries": options.max_retries,
            "catch_exceptions": options.catch_exceptions,
            "retry_exceptions": bool(options.retry_exceptions),
        }
        if options
        else {},
        "user_metadata": dict(options.metadata) if options else {},
        "stats": {
            "start_time": (stats or {}).get("start_time"),
            "end_time": (stats or {}).get("end_time"),
        },
    }


async def send(
    engine: Engine,
    workflow_id: str,
    key: str,
    payload: object,
    event_id: str | None,
    *,
    answered_by: str = "notebook",
) -> str:
    """Store an event for the run's wait on ``key``; returns its event id.

    ``answered_by`` is who sends it (``notebook:<user>`` of the sending process, which
    may be a client of this one): the source an ``ask`` step's answer records.

    Raises:
        WorkflowNotFoundError: The store has no such run.
        AnswerError: An ``ask`` step waits on ``key`` and ``payload`` does not fit its model.
    """
    if engine.active(workflow_id) is None and await engine.load(workflow_id) is None:
        raise WorkflowNotFoundError(not_found_message(workflow_id, engine), workflow_id=workflow_id)
    stored, source = _checked_answer(engine, workflow_id, key, payload, answered_by)
    result = await engine.inbox.send(workflow_id, key, stored, event_id=event_id, source=source)
    return result.event_id


def _checked_answer(
    engine: Engine, workflow_id: str, key: str, payload: object, answered_by: str
) -> tuple[object, str]:
    """What ``send_event`` stores, and its source: an ``ask`` step's validated answer.

    Raises:
        AnswerError: An ``ask`` step waits on ``key`` and ``payload`` does not fit its model.
    """
    questions = engine.services.get(Questions)
    question = questions.find(workflow_id, key) if questions is not None else None
    if questions is None or question is None:
        return payload, "notebook"
    try:
        return questions.check(workflow_id, key, payload, answered_by=answered_by), answered_by
    except InvalidAnswer as exc:
        raise answer_error(exc, question, call=f"send_event({workflow_id!r}, {key!r}, ...)") from None


async def send_many(engine: Engine, workflow_id: str, items: Sequence[tuple[str, object]]) -> list[str]:
    """Store many ``(key, payload)`` events in one transaction; returns their event ids.

    Raises:
        WorkflowNotFoundError: The store has no such run.
        TypeError: A payload cannot be pickled (nothing is stored).
    """
    if engine.active(workflow_id) is None and await engine.load(workflow_id) is None:
        raise WorkflowNotFoundError(not_found_message(workflow_id, engine), workflow_id=workflow_id)
    try:
        return await engine.inbox.send_many(workflow_id, list(items))
    except TypeError as exc:
        raise TypeError(
            f"send_events({workflow_id!r}, ...): a payload cannot be stored ({exc}); send "
            "picklable data. Nothing was stored."
        ) from None


def _live_status(engine: Engine, row: dict[str, object]) -> None:
    row["status"] = engine.status_of(str(row["workflow_id"]), str(row["status"])).value


async def runs_overview(engine: Engine) -> list[dict[str, object]]:
    """Every run's ``workflows`` row (what ``evkit list`` shows), with its live status."""
    rows = await engine.queue.read(list_runs)
    for row in rows:
        _live_status(engine, row)
    return rows


async def run_detail(engine: Engine, workflow_id: str) -> dict[str, object] | None:
    """One run's row, steps and events (what ``evkit status`` shows), with its live status.

    ``None`` if the store has no such run.
    """
    run = await engine.queue.read(run_overview, workflow_id)
    if run is not None:
        _live_status(engine, run)
    return run
