"""Turns a :class:`~evkit.model.RunProgress` into the plain data the views draw.

Node boxes and the rows of the event table, all JSON-able; shared by the
live widget and the static picture so both show the same thing; and the details panel
of one step (live widget only). No widget, no I/O.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Iterable, Mapping

from evkit.handle import StepDetails
from evkit.model import RunProgress, StepLabel, StepShape, StepSnapshot, step_label
from evkit.notebook.layout import Layout
from evkit.notebook.tracebacks import without_evkit_frames
from evkit.store.details import StepDetailsRecord

# The colour of each StepState; the widget's CSS (run_widget.css) uses the same values.
STATE_COLORS: dict[str, str] = {
    "pending": "#e0e0e0",
    "running": "#64b5f6",
    "waiting": "#ffd54f",
    "received": "#ffb74d",
    "checkpointed": "#ba68c8",
    "committed": "#4db6ac",
    "done": "#81c784",
    "failed": "#e57373",
    "cancelled": "#9e9e9e",
}

# The event-table columns that show when a state was entered, in contract order.
EVENT_TIME_COLUMNS = ("waiting", "received", "checkpointed", "committed")

# The states whose times the details panel lists, in the order a step goes through them.
EVENT_DETAIL_STATES = (*EVENT_TIME_COLUMNS, "cancelled", "failed")
FUNCTION_DETAIL_STATES = ("running", "done", "failed", "cancelled")

TRACEBACK_LINES = 20
"""The last lines of a failed step's traceback the details panel shows."""

_LABEL_CHARS = 22


def label(step_id: str) -> str:
    """The text drawn in a node's box: the step id, shortened from the left if long."""
    return step_id if len(step_id) <= _LABEL_CHARS else "…" + step_id[-(_LABEL_CHARS - 1) :]


def node_text(step_id: str, step_label: StepLabel | None = None) -> str:
    """The text of a node: its label (shortened at the end), else its id (see :func:`label`)."""
    if step_label is None:
        return label(step_id)
    text = label_text(step_label)
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def label_text(step_label: StepLabel) -> str:
    """A label as Python shows it: text as it is, a time in this machine's time zone."""
    return local_time_text(step_label) if isinstance(step_label, dt.datetime) else step_label


def local_time_text(when: dt.datetime) -> str:
    """``"Dec 07 19:03:48 CET"``: a time of day in this machine's time zone, named.

    The static picture may be read elsewhere (an HTML export), hence the zone's name.
    """
    return when.astimezone().strftime("%b %d %H:%M:%S %Z").rstrip()


def labels_json(labels: Mapping[str, StepLabel]) -> dict[str, object]:
    """Labels for the browser: text as it is, a time as ``{"at": epoch seconds}``.

    The browser writes times in its own locale and time zone.
    """
    return {
        step_id: {"at": value.timestamp()} if isinstance(value, dt.datetime) else value
        for step_id, value in labels.items()
    }


def node_boxes(
    layout: Layout, shapes: Iterable[StepShape] = (), labels: Mapping[str, StepLabel] | None = None
) -> list[dict[str, object]]:
    """One dict per laid-out node: ``id``, ``label``, ``kind``, ``x``, ``y`` (centre, px).

    Args:
        layout: Where each node is.
        shapes: The steps' ``(step_id, kind, upstream)``, for their kinds (default "function").
        labels: The steps' labels (``RunProgress.labels``) for their text; without
            one a node shows its id.
    """
    kinds = {step_id: kind for step_id, kind, _ in shapes}
    labels = labels or {}
    return [
        {
            "id": step_id,
            "label": node_text(step_id, labels.get(step_id)),
            "kind": kinds.get(step_id, "function"),
            "x": x,
            "y": y,
        }
        for step_id, (x, y) in layout.positions.items()
    ]


def event_rows(progress: RunProgress, *, now: float) -> list[dict[str, object]]:
    """One row per event step of the progress's page, in step order.

    Args:
        progress: The run.
        now: The runtime clock's time (seconds since the epoch), for ``time_left``.

    Returns:
        Dicts with ``step``, ``label`` (the step's label as Python writes it, or ``""``),
        ``label_at`` (epoch seconds when the label is a time, else ``None``: the browser
        writes it in its own time zone), ``listener``, ``args``, ``state``, ``attempts``, ``times``
        (state -> seconds since the run started, as text like ``"+0.512 s"``),
        ``times_iso`` (state -> ISO time), ``deadline`` (epoch seconds or ``None``),
        ``deadline_kind`` (``"fires"`` for a timer, ``"times out"`` for a timeout),
        ``time_left`` (seconds, or ``None``), ``inbox_key``, ``error``.
    """
    start = progress.started_at
    return [event_row(step, started_at=start, now=now) for step in progress.events]


def event_row(step: StepSnapshot, *, started_at: dt.datetime | None, now: float) -> dict[str, object]:
    """The event-table row of one event step (see :func:`event_rows` for its keys).

    Args:
        step: An event step.
        started_at: When the run started (times are shown relative to it).
        now: The runtime clock's time (seconds since the epoch), for ``time_left``.
    """
    deadline, kind = None, None
    if step.deadline is not None:
        deadline, kind = step.deadline.timestamp(), "fires"
    elif step.timeout_at is not None:
        deadline, kind = step.timeout_at.timestamp(), "times out"
    live = step.state == "waiting"
    shown = step_label(step)
    times, times_iso = {}, {}
    for state, when in step.state_times.items():
        times[state] = relative(when, started_at)
        times_iso[state] = when.isoformat()
    return {
        "step": step.step_id,
        "label": label_text(shown) if shown is not None else "",
        "label_at": shown.timestamp() if isinstance(shown, dt.datetime) else None,
        "listener": step.listener or "",
        "args": step.args_text or "",
        "state": step.state,
        "attempts": step.attempts,
        "times": times,
        "times_iso": times_iso,
        "deadline": deadline if live else None,
        "deadline_kind": kind if live else None,
        "time_left": max(0.0, deadline - now) if live and deadline is not None else None,
        "inbox_key": step.inbox_key if live else None,
        "error": step.error or "",
    }


def relative(when: dt.datetime, start: dt.datetime | None) -> str:
    """``when`` as seconds after ``start`` (``"+1.250 s"``), or a local time of day without a start."""
    if start is None:
        return when.astimezone().strftime("%H:%M:%S.%f")[:-3]
    return f"+{(when - start).total_seconds():.3f} s"


def time_left_text(seconds: float | None, kind: str | None) -> str:
    """``"fires in 3.2 s"`` / ``"times out in 1.0 s"`` / ``""``."""
    if seconds is None or kind is None:
        return ""
    return f"{kind} in {seconds:.1f} s"


def summary_text(progress: RunProgress) -> str:
    """The short, stable text form: ``<evkit run 'wid' SUCCESSFUL: 3 steps>``."""
    count = len(progress.shapes)
    return f"<evkit run {progress.workflow_id!r} {progress.status.value}: {count} step{'s' * (count != 1)}>"


def step_details(
    step_id: str,
    *,
    kind: str,
    state: str,
    shown_label: StepLabel | None = None,
    snapshot: StepSnapshot | None = None,
    details: StepDetails | None = None,
    loading: bool = False,
) -> dict[str, object]:
    """The details panel of one step, as the widget's ``details`` trait holds it.

    Built from what the view has (its state, its label, its record when the view has
    one) and, when given, what ``RunHandle.step_details_async`` read: the stored attempts
    with their times, the result or payload preview, the failing step's traceback.

    Args:
        step_id: The step.
        kind: ``"function"`` or ``"event"``.
        state: Its state now.
        shown_label: Its label (see ``RunProgress.labels``), if it has one.
        snapshot: Its record, if the view has one (``details.step`` wins over it).
        details: What was read for it, if anything yet.
        loading: True while the read is under way.

    Returns:
        A dict with ``step``, ``kind``, ``state``, ``label``, ``label_at`` (epoch
        seconds, or ``None``), ``listener``, ``args``, ``result`` and ``payload`` (readable
        text or ``None``), ``cut`` (True when that text was cut), ``error`` (of a failed step),
        ``traceback``, ``attempts`` (how many), ``attempt_rows`` (dicts with
        ``attempt``, ``state``, ``started_at``, ``ended_at`` in epoch seconds, and
        ``error``), ``times`` (``[state, epoch seconds]`` pairs, in the order the step goes
        through them), ``event_id``, ``stored`` (True once the store was read) and
        ``loading``.
    """
    record = details.step if details is not None and details.step is not None else snapshot
    stored = details.stored if details is not None else None
    shown = shown_label if shown_label is not None else (step_label(record) if record is not None else None)
    times: dict[str, dt.datetime] = dict(record.state_times) if record is not None else {}
    if stored is not None:
        times.update(stored.state_times)  # the store's are the durable ones
    order = EVENT_DETAIL_STATES if kind == "event" else FUNCTION_DETAIL_STATES
    error = (record.error if record is not None else None) or (stored.error if stored is not None else None)
    attempts = record.attempts if record is not None else 0
    if stored is not None:
        attempts = max(attempts, len(stored.attempts))
    return {
        "step": step_id,
        "kind": kind,
        "state": state,
        "label": label_text(shown) if shown is not None else "",
        "label_at": shown.timestamp() if isinstance(shown, dt.datetime) else None,
        "listener": (record.listener if record is not None else None)
        or (stored.listener if stored is not None else None)
        or "",
        "args": _args_text(record, details, stored),
        "result": stored.result_text if stored is not None else None,
        "payload": stored.payload_text if stored is not None else None,
        "cut": stored.cut if stored is not None else False,
        # An error a retry recovered from is in its attempt's row, not the step's.
        "error": (error or "") if state == "failed" else "",
        "traceback": short_traceback(details.failure) if details is not None else "",
        "attempts": attempts,
        "attempt_rows": [
            {
                "attempt": a.attempt,
                "state": a.state,
                "started_at": a.started_at.timestamp(),
                "ended_at": a.ended_at.timestamp() if a.ended_at is not None else None,
                "error": a.error or "",
            }
            for a in (stored.attempts if stored is not None else ())
        ],
        "times": [[name, times[name].timestamp()] for name in order if name in times],
        "event_id": stored.event_id if stored is not None else None,
        "stored": stored is not None,
        "loading": loading,
    }


def _args_text(
    record: StepSnapshot | None, details: StepDetails | None, stored: StepDetailsRecord | None
) -> str:
    if details is not None and details.call_text is not None:
        return details.call_text
    if record is not None and record.args_text is not None:
        return record.args_text
    return (stored.args_text if stored is not None else None) or ""


def short_traceback(error: BaseException | None, *, max_lines: int = TRACEBACK_LINES) -> str:
    """The step's own frames and its error, as Python prints them; its last lines only.

    evkit's frames and the asyncio plumbing between them are left out (``""`` without an error).
    """
    if error is None:
        return ""
    lines = "".join(
        traceback.format_exception(type(error), error, without_evkit_frames(error.__traceback__), chain=False)
    ).splitlines()
    if len(lines) > max_lines:
        lines = ["…", *lines[-max_lines:]]
    return "\n".join(lines)
