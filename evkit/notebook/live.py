"""Binds a :class:`RunWidget` to a running :class:`~evkit.RunHandle`.

Pushes the run's progress at most ~10 times a second and, for big runs, no more often
than keeps its own work a small share of the loop (see COST_FACTOR); swaps dot's drawing
in for the browser's quick layered one when the DAG suits dot (again when dynamic steps
appear), turns the event table's pages, carries "Send" clicks to the engine, and fills
the details panel of the step the user selects from a store read (again when its state
changes).

Threading rule: every trait write happens on the engine loop's thread (the kernel's main
thread by default, the ``evkit-engine`` thread with ``loop="thread"``); frontend
callbacks only hand work to that loop. Nothing here blocks the loop: layouts and sends
run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from evkit import api
from evkit.handle import RunHandle
from evkit.listeners.ask import questions_of
from evkit.model import RunProgress
from evkit.notebook.forms import submit_answer
from evkit.notebook.grouping import group_steps
from evkit.notebook.layout import LayoutEngine, dot_would_be_used, layout_for
from evkit.notebook.timeline import timeline_json
from evkit.notebook.widget import RunWidget, parse_payload
from evkit.runtime import Runtime

logger = logging.getLogger("evkit.notebook")

DEFAULT_MIN_INTERVAL_SECONDS = 0.1

TIMELINE_INTERVAL_SECONDS = 1.0
"""Least time between two reads of the timeline's bars while the view shows it."""

COST_FACTOR = 20
"""The next push waits at least this many times the last push's duration.

So pushes take at most 1/COST_FACTOR of the loop's time."""


class LiveRun:
    """Keeps one widget showing one run until the run ends (or :meth:`close`).

    Args:
        handle: The run.
        widget: The widget to write (nobody else may write it).
        min_interval_seconds: Least time between two pushes (coalescing).
        layout_engine: How to re-lay out the DAG when steps appear.
        first_push: ``(time.monotonic() at its start, duration in seconds)`` of a push
            already made (building the widget): the next push is paced
            from it. ``None``: the first push follows :meth:`start` at once.
    """

    def __init__(
        self,
        handle: RunHandle,
        widget: RunWidget,
        *,
        min_interval_seconds: float = DEFAULT_MIN_INTERVAL_SECONDS,
        layout_engine: LayoutEngine = "auto",
        first_push: tuple[float, float] | None = None,
    ) -> None:
        self.handle = handle
        self.widget = widget
        self.pushes = 0
        self._loop = handle.engine_loop
        self._clock = handle.runtime.clock
        self._interval = min_interval_seconds
        self._layout_engine = layout_engine
        self._last_push, self._last_cost = first_push or (0.0, 0.0)
        self._timer: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._layout_task: asyncio.Task[None] | None = None
        self._layout_stale = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._details_task: asyncio.Task[None] | None = None
        # The timeline is read from the store only while the view shows it, so a view
        # without it costs the run nothing more.
        self._timeline_task: asyncio.Task[None] | None = None
        self._timeline_read_at = 0.0
        self._timeline_again = False
        widget.on_send_request(self.request_send)
        widget.on_timeline_request(self.request_timeline)
        widget.on_page_request(self.request_page)
        widget.on_details_request(self.request_details)
        widget.on_answer_request(self.request_answer)
        self._unsubscribe_questions: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<evkit LiveRun {self.handle.workflow_id!r}>"

    # ------------------------------------------------------------------ any thread

    def start(self) -> None:
        """Subscribe to the run (from any thread); a push follows, paced as any other."""
        self._to_loop(self._attach)

    def close(self) -> None:
        """Stop updating the widget (from any thread); the widget keeps its last state."""
        self._to_loop(self._detach)

    def request_send(self, step_id: str, payload_text: str) -> None:
        """Deliver the payload typed in a step's form (called by the widget; any thread)."""
        self._to_loop(self._start_send, step_id, payload_text)

    def request_answer(self, workflow_id: str, step_id: str, values: dict[str, object]) -> None:
        """Validate and send the answer given in a question's form (called by the widget; any thread)."""
        self._to_loop(self._start_answer, workflow_id, step_id, values)

    def request_page(self, offset: int) -> None:
        """Show the event table's page starting at event step ``offset`` (any thread)."""
        self._to_loop(self._show_page, offset)

    def request_details(self, step_id: str | None) -> None:
        """Show the details of ``step_id`` in the widget, ``None`` closes them (any thread)."""
        self._to_loop(self._select, step_id)

    def request_timeline(self, is_open: bool) -> None:
        """Keep the widget's timeline filled while the view shows it (any thread)."""
        self._to_loop(self._set_timeline, is_open)

    def _to_loop(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the runtime was shut down
            logger.warning("evkit: the engine loop of run %r is closed", self.handle.workflow_id)

    # ------------------------------------------------------------------ engine loop

    def _attach(self) -> None:
        if self._closed:
            return
        try:
            self._unsubscribe = self.handle.subscribe(self._changed)
        except Exception:  # a closed runtime: show what we have and stop
            logger.warning("evkit: cannot follow run %r", self.handle.workflow_id, exc_info=True)
            return
        # The run's open questions (workflow.ask) get forms: follow them too. A run another
        # process owns (a RemoteRunHandle) shows no forms: its questions live there.
        runtime = self.handle.runtime
        if isinstance(runtime, Runtime):
            try:
                self._unsubscribe_questions = questions_of(runtime.engine().services).subscribe(self._changed)
            except Exception:
                logger.warning(
                    "evkit: cannot follow the questions of %r", self.handle.workflow_id, exc_info=True
                )
        progress = self.widget.last_progress
        if progress is not None and self.widget.dag_layout is None and self._wants_dot(progress):
            self._relayout(progress)  # dot's drawing, from a worker thread
        self._changed()

    def _detach(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unsubscribe_questions is not None:
            self._unsubscribe_questions()
            self._unsubscribe_questions = None

    def _changed(self) -> None:
        # Coalesce: at most one push per interval, and pace by the pushes' own cost so the
        # widget takes at most ~1/COST_FACTOR of the loop; the push reads the newest progress.
        if self._closed or self._timer is not None:
            return
        spacing = max(self._interval, COST_FACTOR * self._last_cost)
        delay = max(0.0, self._last_push + spacing - time.monotonic())
        self._timer = self._loop.call_later(delay, self._push)

    def _push(self) -> None:
        self._timer = None
        self._last_push = time.monotonic()
        try:
            self._push_now()
        finally:
            self._last_cost = time.monotonic() - self._last_push

    def _show_page(self, offset: int) -> None:
        self.widget.show_page(offset)  # sets the (clamped) offset; the push reads that page
        if self._closed:  # the run ended: the progress is final, show the page from it
            self._push_now(detach=False)
            return
        if self._timer is not None:  # a click is answered now, not at the next paced push
            self._timer.cancel()
        self._push()

    def _push_now(self, *, detach: bool = True) -> None:
        widget = self.widget
        try:
            progress = self.handle.progress(
                event_offset=widget.event_offset, event_limit=widget.event_page_rows
            )
        except Exception:
            logger.warning(
                "evkit: cannot read run %r; the view stops", self.handle.workflow_id, exc_info=True
            )
            self._detach()
            return
        self.pushes += 1
        if widget.apply_progress(progress, now=self._clock.now()) and self._wants_dot(progress):
            self._relayout(progress)
        self._show_questions()
        if widget.timeline_open and (
            progress.status.is_final or time.monotonic() - self._timeline_read_at >= TIMELINE_INTERVAL_SECONDS
        ):
            self._read_timeline()
        selected = widget.selected_step
        if selected is not None and progress.states.get(selected) != widget.details.get("state"):
            self._read_details(selected)  # its state moved on: what the store has did too
        if progress.status.is_final and detach:
            self._detach()

    def _set_timeline(self, is_open: bool) -> None:
        self.widget.show_timeline(is_open)
        if is_open:
            self._read_timeline()

    def _read_timeline(self) -> None:
        if self._timeline_task is not None:  # one read at a time; its end reads again
            self._timeline_again = True
            return
        self._timeline_again = False
        self._timeline_read_at = time.monotonic()
        task = self._loop.create_task(self._timeline())
        self._timeline_task = task
        task.add_done_callback(self._timeline_done)

    async def _timeline(self) -> None:
        # The same rows as plot_timeline, read in a worker thread: the loop never waits on DuckDB.
        data = await asyncio.to_thread(timeline_json, self.handle.workflow_id)
        if self.widget.timeline_open:
            self.widget.timeline = data

    def _timeline_done(self, task: asyncio.Task[None]) -> None:
        self._timeline_task = None
        if self._timeline_again and self.widget.timeline_open:
            self._read_timeline()
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "evkit: reading the timeline of run %r failed",
                self.handle.workflow_id,
                exc_info=task.exception(),
            )

    def _select(self, step_id: str | None) -> None:
        # Shown at once from what the view has; the store's part follows from its read.
        self.widget.show_details(step_id, loading=step_id is not None)
        if self.widget.selected_step is not None:
            self._read_details(self.widget.selected_step)

    def _read_details(self, step_id: str) -> None:
        if self._details_task is not None:  # one read at a time; its end reads again if needed
            return
        task = self._loop.create_task(self._details(step_id))
        self._details_task = task
        task.add_done_callback(self._details_done)

    async def _details(self, step_id: str) -> None:
        try:
            details = await self.handle.step_details_async(step_id)
        except Exception as exc:  # a closed runtime or store: say so in the panel
            if self.widget.selected_step == step_id:
                self.widget.show_details(step_id)
                text = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.widget.details = {**self.widget.details, "error": f"Cannot read the store: {text}"}
            return
        if self.widget.selected_step == step_id:
            self.widget.show_details(step_id, details)

    def _details_done(self, task: asyncio.Task[None]) -> None:
        self._details_task = None
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "evkit: reading a step of run %r failed", self.handle.workflow_id, exc_info=task.exception()
            )
        widget = self.widget
        if widget.selected_step is None:
            return
        shown = widget.details
        latest = widget.last_progress
        state = latest.states.get(widget.selected_step) if latest is not None else None
        if shown.get("step") != widget.selected_step or shown.get("loading") or shown.get("state") != state:
            self._read_details(widget.selected_step)  # selected or changed while reading

    def _wants_dot(self, progress: RunProgress) -> bool:
        # The browser lays out a grouped DAG itself (dot's positions are per step).
        return dot_would_be_used(len(progress.shapes), engine=self._layout_engine) and not (
            group_steps(progress.shapes).grouped
        )

    def _relayout(self, progress: RunProgress) -> None:
        if self._layout_task is not None:
            self._layout_stale = True
            return
        self._layout_task = self._loop.create_task(self._layout(progress))
        self._layout_task.add_done_callback(self._layout_done)

    async def _layout(self, progress: RunProgress) -> None:
        # `dot` is slow enough even on mid-sized DAGs to stall the loop: run it off the
        # engine loop. Until it is back the browser shows its own layered layout.
        layout = await asyncio.to_thread(layout_for, progress.shapes, engine=self._layout_engine)
        self.widget.set_layout(layout)

    def _layout_done(self, task: asyncio.Task[None]) -> None:
        self._layout_task = None
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "evkit: laying out run %r failed", self.handle.workflow_id, exc_info=task.exception()
            )
        latest = self.widget.last_progress
        if self._layout_stale and latest is not None:
            self._layout_stale = False
            if self.widget.dag_layout is None and self._wants_dot(latest):
                self._relayout(latest)

    def _start_send(self, step_id: str, payload_text: str) -> None:
        # The form is on a row of the shown page, so the step is among its records.
        progress = self.widget.last_progress
        step = next((s for s in progress.events if s.step_id == step_id), None) if progress else None
        if step is None or step.state != "waiting" or step.inbox_key is None:
            state = step.state if step is not None else "unknown"
            self.widget.set_send_status(
                step_id, ok=False, text=f"Step {step_id!r} is not waiting for a manual event (it is {state})."
            )
            return
        task = self._loop.create_task(self._send(step_id, step.inbox_key, step.attempts, payload_text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, step_id: str, key: str, attempt: int, payload_text: str) -> None:
        workflow_id = self.handle.workflow_id
        payload = parse_payload(payload_text)
        # One event id per wait: pressing "Send" twice delivers the event once.
        event_id = f"widget:{step_id}:{attempt}"
        try:
            if self.handle.runtime.closed:
                raise RuntimeError(
                    f"The runtime of run {workflow_id!r} was closed; resume the run "
                    f"(workflow.resume_async({workflow_id!r})) and display the new handle."
                )
            # send_event blocks until the event is durable; a worker thread waits for it
            # so that this loop (the engine's) keeps running and can store it.
            await asyncio.to_thread(api.send_event, workflow_id, key, payload, event_id=event_id)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.widget.set_send_status(step_id, ok=False, text=text)
            return
        self.widget.set_send_status(step_id, ok=True, text=f"sent {_short(payload)} to key {key!r}")

    def _show_questions(self) -> None:
        try:
            questions = questions_of(self.handle.runtime.engine().services).all(self.handle.workflow_id)
        except Exception:  # a closed runtime: the run is over, so is every question
            questions = []
        self.widget.set_questions(questions)

    def _start_answer(self, workflow_id: str, step_id: str, values: dict[str, object]) -> None:
        answer = submit_answer(self.handle.runtime, self.widget, workflow_id, step_id, values)
        task = self._loop.create_task(answer)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
