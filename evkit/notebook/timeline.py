"""``plot_timeline``: a run's steps and each event's wait/checkpoint/commit as bars.

Drawn with matplotlib from the store's ``steps``, ``events`` and ``workflows`` views,
so it works for a run that finished in an earlier kernel; the same bars as JSON feed the
live widget's timeline (``timeline_json``, or ``snapshot_timeline_json`` for a widget
built from a snapshot).

Reads only through ``evkit.sql``; makes a ``Figure`` without pyplot, so nothing is
shown twice and no global figure state changes.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evkit import api
from evkit.errors import WorkflowNotFoundError
from evkit.model import RunSnapshot
from evkit.notebook.viewmodel import STATE_COLORS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Phase name -> colour; the legend shows them in this order.
PHASE_COLORS = {
    "run": STATE_COLORS["done"],
    "failed": STATE_COLORS["failed"],
    "cancelled": STATE_COLORS["cancelled"],
    "waiting": STATE_COLORS["waiting"],
    "checkpoint": STATE_COLORS["checkpointed"],
    "commit": STATE_COLORS["committed"],
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of the timeline: a phase of a step, in seconds since the run was created."""

    step_id: str
    phase: str
    start: float
    end: float


def timeline_bars(workflow_id: str) -> tuple[list[Bar], dict[str, object]]:
    """Read the bars of a run from the store.

    Returns:
        The bars (ordered by start), and the run's row of the ``workflows`` view
        (``status``, ``created_at``, ``ended_at``).

    Raises:
        WorkflowNotFoundError: The store has no such run.
    """
    runs = api.sql(
        "SELECT status, created_at, updated_at, ended_at FROM workflows WHERE workflow_id = ?", [workflow_id]
    ).fetchall()
    if not runs:
        raise WorkflowNotFoundError(
            f"Run {workflow_id!r} is not in the store; nothing to plot. "
            "workflow.list_all() lists the runs it has.",
            workflow_id=workflow_id,
        )
    status, created, updated, ended = runs[0]
    origin: dt.datetime = created
    until: dt.datetime = ended or updated or created

    def seconds(when: dt.datetime | None) -> float | None:
        return None if when is None else (when - origin).total_seconds()

    bars: list[Bar] = []
    for step_id, state, started, finished in api.sql(
        "SELECT step_id, state, started_at, ended_at FROM steps "
        "WHERE workflow_id = ? AND started_at IS NOT NULL",
        [workflow_id],
    ).fetchall():
        phase = {"failed": "failed", "cancelled": "cancelled"}.get(state, "run")
        start, end = seconds(started), seconds(finished or until)
        assert start is not None
        assert end is not None
        bars.append(Bar(step_id, phase, start, max(end, start)))
    for row in api.sql(
        "SELECT step_id, waiting_at, received_at, checkpointed_at, committed_at, "
        "coalesce(cancelled_at, failed_at) FROM events WHERE workflow_id = ?",
        [workflow_id],
    ).fetchall():
        step_id, waiting, received, checkpointed, committed, stopped = (row[0], *map(seconds, row[1:]))
        end_of_wait = (
            received if received is not None else (stopped if stopped is not None else seconds(until))
        )
        if waiting is not None and end_of_wait is not None:
            bars.append(Bar(step_id, "waiting", waiting, max(end_of_wait, waiting)))
        if received is not None and checkpointed is not None:
            bars.append(Bar(step_id, "checkpoint", received, checkpointed))
        if checkpointed is not None and committed is not None:
            bars.append(Bar(step_id, "commit", checkpointed, committed))
    bars.sort(key=lambda b: (b.start, b.step_id))
    return bars, {"status": status, "created_at": created, "ended_at": ended}


def timeline_json(workflow_id: str) -> dict[str, object]:
    """The bars of :func:`timeline_bars` as the live widget's ``timeline`` trait holds them.

    Reads the store (call it off the engine loop).

    Returns:
        ``{"origin": epoch seconds of the run's creation, "status": ..., "bars":
        [[step_id, phase, start, end], ...]}`` with ``start``/``end`` in seconds since the origin.

    Raises:
        WorkflowNotFoundError: The store has no such run.
    """
    bars, run = timeline_bars(workflow_id)
    created = run["created_at"]
    origin = created.timestamp() if isinstance(created, dt.datetime) else None
    return {
        "origin": origin,
        "status": str(run["status"]),
        "bars": [[b.step_id, b.phase, round(b.start, 4), round(b.end, 4)] for b in bars],
    }


def snapshot_timeline_json(snapshot: RunSnapshot, *, now: float) -> dict[str, object]:
    """The same bars as :func:`timeline_json`, from the state times a snapshot carries.

    For a widget built from a snapshot, which has no store to read. Times are seconds
    since the run started (its earliest state time when it has no start); a span still
    open ends at ``now``.
    """
    starts = [t for s in snapshot.steps for t in s.state_times.values()]
    origin_at = snapshot.started_at or (min(starts) if starts else None)
    if origin_at is None:
        return {"origin": None, "status": snapshot.status.value, "bars": []}
    origin = origin_at.timestamp()
    bars: list[tuple[str, str, float, float]] = []
    for step in snapshot.steps:
        t = {state: when.timestamp() - origin for state, when in step.state_times.items()}
        if step.kind == "event":
            waiting = t.get("waiting")
            stop = t.get("received", t.get("cancelled", t.get("failed", now - origin)))
            if waiting is not None:
                bars.append((step.step_id, "waiting", waiting, max(stop, waiting)))
            if "received" in t and "checkpointed" in t:
                bars.append((step.step_id, "checkpoint", t["received"], t["checkpointed"]))
            if "checkpointed" in t and "committed" in t:
                bars.append((step.step_id, "commit", t["checkpointed"], t["committed"]))
        elif "running" in t:
            phase = {"failed": "failed", "cancelled": "cancelled"}.get(step.state, "run")
            end = t.get("done", t.get("failed", t.get("cancelled", now - origin)))
            bars.append((step.step_id, phase, t["running"], max(end, t["running"])))
    bars.sort(key=lambda b: (b[2], b[0]))
    rounded = [[step, phase, round(start, 4), round(end, 4)] for step, phase, start, end in bars]
    return {"origin": origin, "status": snapshot.status.value, "bars": rounded}


def plot_timeline(workflow_id: str, *, ax: Axes | None = None) -> Figure:
    """Draw a run's steps and each event's wait/checkpoint/commit as bars on a time axis.

    Args:
        workflow_id: The run (finished or not, from this kernel or an earlier one).
        ax: Draw into these axes instead of a new figure.

    Returns:
        The figure (the last expression of a cell displays it).

    Raises:
        WorkflowNotFoundError: The store has no such run.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    bars, run = timeline_bars(workflow_id)
    rows: list[str] = []
    for bar in bars:
        if bar.step_id not in rows:
            rows.append(bar.step_id)
    if ax is None:
        figure = Figure(figsize=(8, 0.8 + 0.35 * max(len(rows), 1)), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.figure  # type: ignore[assignment]
    span = max((b.end for b in bars), default=1.0) or 1.0
    for bar in bars:
        y = rows.index(bar.step_id)
        # Checkpoints and commits last milliseconds: keep them visible as thin slivers.
        width = max(bar.end - bar.start, span / 400)
        height = 0.8 if bar.phase in ("run", "failed", "cancelled", "waiting") else 0.5
        ax.barh(
            y, width, left=bar.start, height=height, color=PHASE_COLORS[bar.phase], edgecolor="#555", lw=0.5
        )
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run was created")
    ax.set_title(f"{workflow_id} ({run['status']})")
    used = [phase for phase in PHASE_COLORS if any(b.phase == phase for b in bars)]
    if used:
        ax.legend(
            handles=[Patch(color=PHASE_COLORS[p], label=p) for p in used],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize="small",
        )
    _register_png_display()
    return figure


def _register_png_display() -> None:
    # A Figure made without pyplot has no IPython display formatter unless `%matplotlib
    # inline` registered one, so a cell ending in plot_timeline(...) would show only its
    # repr. Register PNG for Figure in the running shell, as that magic does.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    png = shell.display_formatter.formatters["image/png"]
    if Figure not in png.type_printers:
        png.for_type(Figure, lambda figure: print_figure(figure, "png"))
