"""The store's record of one step, for a view that shows one step in detail.

One read of the step's rows in ``step_log`` and ``event_log``: its attempts with their
times, its result's or event's readable text (cut to a preview), and its errors. Runs on
the writer thread like every read (see ``StoreWriter.submit``); no blob is loaded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb

PREVIEW_CHARS = 2000
"""How much of a result's or payload's readable text a detail read returns at most."""

_ENDS_ATTEMPT = ("succeeded", "continued", "failed", "cancelled", "committed")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt of a step (one run of its body, or one wait of its listener).

    Attributes:
        attempt: Its number, from 1.
        state: The last state the attempt reached (``"running"``, ``"succeeded"``,
            ``"failed"``, ``"waiting"``, ``"checkpointed"``, ``"committed"``, ...).
        started_at: When it started.
        ended_at: When it ended, if it has.
        error: Its one-line error, if it failed.
    """

    attempt: int
    state: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDetailsRecord:
    """What the store holds of one step.

    Attributes:
        workflow_id: The run's id.
        step_id: The step's id.
        kind: ``"function"`` or ``"event"``.
        attempts: Every attempt, oldest first.
        result_text: A function step's value as readable text (JSON or a repr), cut to
            ``PREVIEW_CHARS`` characters; ``None`` before it succeeded.
        payload_text: An event step's checkpointed event as readable text, cut the same
            way; ``None`` before the checkpoint.
        cut: True when ``result_text`` or ``payload_text`` was cut.
        error: The step's last one-line error, if any.
        listener: An event step's listener class name.
        args_text: An event step's readable listener arguments.
        event_id: An event step's stable event id.
        state_times: When the step last entered each state (for an event step:
            ``waiting``, ``received``, ``checkpointed``, ``committed``, ``cancelled``,
            ``failed``; for a function step: ``running``, ``done``, ``failed``, ``cancelled``).
    """

    workflow_id: str
    step_id: str
    kind: str
    attempts: tuple[AttemptRecord, ...] = ()
    result_text: str | None = None
    payload_text: str | None = None
    cut: bool = False
    error: str | None = None
    listener: str | None = None
    args_text: str | None = None
    event_id: str | None = None
    state_times: Mapping[str, dt.datetime] = field(default_factory=dict)


def _cut(text: str | None, limit: int) -> tuple[str | None, bool]:
    if text is None or len(text) <= limit:
        return text, False
    return text[:limit] + "…", True


# The step's rows of its current generation only: those after its latest generation row
# (a re-run that ran it again; see schema version 4). Parameters $1, $2: run, step.
CURRENT_GENERATION_SINCE = (
    "coalesce((SELECT max(seq) FROM step_generations WHERE workflow_id = $1 AND step_id = $2), -1)"
)


def load_step_details(
    con: duckdb.DuckDBPyConnection, workflow_id: str, step_id: str, *, preview_chars: int = PREVIEW_CHARS
) -> StepDetailsRecord | None:
    """Read what the store holds of one step, or ``None`` if it has no row of it yet.

    Args:
        con: The writer's connection (this runs on the writer thread).
        workflow_id: The run.
        step_id: The step.
        preview_chars: Where to cut the readable result or payload (an ellipsis follows).
    """
    # One more character than the preview: it tells a text that fills it from a cut one.
    function_rows = con.execute(
        f"""
        SELECT state, attempt, recorded_at, left(result_text, $3), error_text FROM step_log
        WHERE workflow_id = $1 AND step_id = $2 AND seq > {CURRENT_GENERATION_SINCE} ORDER BY seq
        """,
        [workflow_id, step_id, preview_chars + 1],
    ).fetchall()
    event_rows = con.execute(
        f"""
        SELECT state, attempt, recorded_at, received_at, listener, args_text,
               left(payload_text, $3), error_text, event_id
        FROM event_log WHERE workflow_id = $1 AND step_id = $2 AND seq > {CURRENT_GENERATION_SINCE}
        ORDER BY seq
        """,
        [workflow_id, step_id, preview_chars + 1],
    ).fetchall()
    if not function_rows and not event_rows:
        return None
    attempts: dict[int, AttemptRecord] = {}
    times: dict[str, dt.datetime] = {}
    result: str | None = None
    error: str | None = None
    for state, attempt, when, text, error_text in function_rows:
        _add(attempts, attempt, state, when, error_text)
        if state == "succeeded":
            result = text
        times["done" if state == "succeeded" else state] = when
        error = error_text or error
    if not event_rows:
        result, cut = _cut(result, preview_chars)
        return StepDetailsRecord(
            workflow_id=workflow_id,
            step_id=step_id,
            kind="function",
            attempts=tuple(attempts.values()),
            result_text=result,
            cut=cut,
            error=error,
            state_times=times,
        )
    listener = args_text = payload = event_id = None
    for row in event_rows:
        state, attempt, when, received_at, row_listener, row_args, text, error_text, row_event_id = row
        _add(attempts, attempt, state, when, error_text)
        times[state] = when
        if received_at is not None:
            times["received"] = received_at
        if state == "checkpointed":
            payload = text
        listener = row_listener or listener
        args_text = row_args or args_text
        event_id = row_event_id or event_id
        error = error_text or error
    payload, cut = _cut(payload, preview_chars)
    return StepDetailsRecord(
        workflow_id=workflow_id,
        step_id=step_id,
        kind="event",
        attempts=tuple(attempts.values()),
        payload_text=payload,
        cut=cut,
        error=error,
        listener=listener,
        args_text=args_text,
        event_id=event_id,
        state_times=times,
    )


def _add(
    attempts: dict[int, AttemptRecord], attempt: int, state: str, when: dt.datetime, error: str | None
) -> None:
    """Fold one row into its attempt: the first row starts it, an ending state ends it."""
    known = attempts.get(attempt)
    started = known.started_at if known is not None else when
    # An attempt's rows come in seq order: the first is its start, the last ending one its end
    # (an event's checkpoint is not an end: its commit follows, maybe after a resume).
    ended = when if state in _ENDS_ATTEMPT else (known.ended_at if known is not None else None)
    attempts[attempt] = AttemptRecord(
        attempt=attempt,
        state=state,
        started_at=started,
        ended_at=ended,
        error=error or (known.error if known is not None else None),
    )
