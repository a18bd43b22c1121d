"""The live view of one run: an anywidget drawing the DAG and the event table.

Its browser half (assets/run_widget.js) draws the DAG from the steps and edges sent once
(grouping fan-outs and laying it out itself unless graphviz's positions come with them),
recolours nodes from a ``states`` trait, zooms, searches, draws the ``timeline`` trait,
and shows the event table one page at a time. This class holds state only: it starts and
subscribes to nothing (``evkit.notebook.live`` binds it to a run).
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anywidget
import traitlets

from evkit.handle import StepDetails
from evkit.model import EVENT_PAGE_SIZE, RunProgress, RunSnapshot, StepShape, StepSnapshot, clamp_offset
from evkit.notebook import viewmodel
from evkit.notebook.forms import FORMS_CSS, FORMS_JS, AnswerForms
from evkit.notebook.layout import Layout, LayoutEngine, dot_would_be_used, layout_for
from evkit.notebook.timeline import snapshot_timeline_json

logger = logging.getLogger("evkit.notebook")

_ASSETS = pathlib.Path(__file__).parent / "assets"

SendRequest = Callable[[str, str], None]
PageRequest = Callable[[int], None]
DetailsRequest = Callable[[str | None], None]
TimelineRequest = Callable[[bool], None]
T = TypeVar("T", bound=traitlets.TraitType[Any, Any])

EVENT_PAGE_ROWS = EVENT_PAGE_SIZE
"""Event steps shown per page of the table (a run may wait on 100,000)."""


def _as_is(value: object, _widget: object) -> object:
    # ipywidgets' default to_json walks every value in Python looking for widgets to
    # replace by references, every step of a big run's state. These traits
    # hold plain JSON built here.
    return value


def _plain(trait: T) -> T:
    trait.tag(sync=True, to_json=_as_is)
    return trait


def parse_payload(text: str) -> object:
    """What a payload typed in the form means: JSON if it parses, else the text itself.

    An empty form sends ``None``.
    """
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class RunWidget(AnswerForms, anywidget.AnyWidget):
    """The DAG of a run coloured by state, and its event table with send forms.

    Build one from a snapshot with :meth:`from_snapshot` (or from ``RunHandle.progress()``
    with :meth:`from_progress`); in a notebook, displaying a ``RunHandle`` makes and binds
    one for you (``evkit.notebook.run_widget(handle)``).
    """

    # Declared as traits here, read once: given as files, anywidget adds them (and its id)
    # to each instance with add_traits, which makes a new class per widget, on every display.
    # The forms of `workflow.ask` questions are their own module, appended (evkit.notebook.forms).
    _esm = traitlets.Unicode((_ASSETS / "run_widget.js").read_text(encoding="utf-8") + "\n" + FORMS_JS).tag(
        sync=True
    )
    _css = traitlets.Unicode((_ASSETS / "run_widget.css").read_text(encoding="utf-8") + "\n" + FORMS_CSS).tag(
        sync=True
    )
    _anywidget_id = traitlets.Unicode(f"{__name__}.RunWidget").tag(sync=True)

    workflow_id = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    # Plain List/Dict traits: per-element validation walks every step of a big run, and
    # the values are built here, never taken from users.
    # nodes: {"id", "kind"} per step in topological order, plus "x", "y" (centre, px) when
    # Python laid the DAG out (dot); without them the browser lays it out in layers.
    nodes: traitlets.List[Any] = _plain(traitlets.List())
    edges: traitlets.List[Any] = _plain(traitlets.List())  # [upstream_id, step_id]
    width = traitlets.Float(0.0).tag(sync=True)  # 0: the browser lays out
    height = traitlets.Float(0.0).tag(sync=True)
    states = _plain(traitlets.Dict())
    # step_id -> the text of its node, or {"at": epoch seconds} for a time the browser
    # writes in its own zone; steps without a label show their id.
    labels = _plain(traitlets.Dict())
    events: traitlets.List[Any] = _plain(traitlets.List())  # one page of event rows
    event_offset = traitlets.Int(0).tag(sync=True)  # index of events[0] among event steps
    event_total = traitlets.Int(0).tag(sync=True)
    event_page_rows = traitlets.Int(EVENT_PAGE_ROWS).tag(sync=True)
    now = traitlets.Float(0.0).tag(sync=True)
    send_status = _plain(traitlets.Dict())
    # The details panel of the selected step (viewmodel.step_details), {} when closed.
    details = _plain(traitlets.Dict())
    # The timeline's bars (timeline.timeline_json), filled only while the view shows it.
    timeline = _plain(traitlets.Dict())

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.dag_layout: Layout | None = None  # the Python layout shown, if any (dot)
        self.last_progress: RunProgress | None = None
        self._shown_shapes: tuple[StepShape, ...] | None = None
        self._shown_labels: object = None  # the RunProgress.labels shown, by identity
        self._snapshot: RunSnapshot | None = None  # the source of a widget fed snapshots
        # step_id -> (step, run start, row): rows of unchanged steps are reused, so a
        # push costs what changed, and comparing with the shown rows is mostly identity.
        self._row_cache: dict[str, tuple[StepSnapshot, object, dict[str, object]]] = {}
        self._send_request: SendRequest | None = None
        self._page_request: PageRequest | None = None
        self._details_request: DetailsRequest | None = None
        self._timeline_request: TimelineRequest | None = None
        self.timeline_open = False  # the view shows the timeline: keep `timeline` fresh
        self.selected_step: str | None = None  # the step whose details are shown
        self._send_seq = 0
        self.on_msg(self._on_frontend_msg)

    def add_traits(self, **traits: traitlets.TraitType[Any, Any]) -> None:
        """Add only traits the class does not declare (see ``_esm`` above)."""
        new = {name: trait for name, trait in traits.items() if not self.has_trait(name)}
        if new:
            super().add_traits(**new)

    def __repr__(self) -> str:
        # Constant on purpose: a repr that shows live state races with the engine and
        # breaks nbval comparisons.
        return f"<evkit RunWidget {self.workflow_id!r}>"

    @classmethod
    def from_snapshot(
        cls,
        snapshot: RunSnapshot,
        *,
        now: float | None = None,
        layout: Layout | None = None,
        layout_engine: LayoutEngine = "auto",
    ) -> RunWidget:
        """A widget showing ``snapshot``.

        Args:
            snapshot: The run to show.
            now: The clock's time for timers' time left (default: ``time.time()``).
            layout: A precomputed layout.
            layout_engine: ``"dot"``, or ``"auto"`` (dot for DAGs it suits, when graphviz
                is installed): laid out now, in Python. ``"layers"``, or ``"auto"``
                otherwise: the browser lays the DAG out.
        """
        progress = RunProgress.of_snapshot(snapshot, event_limit=EVENT_PAGE_ROWS)
        widget = cls.from_progress(progress, now=now, layout=layout, layout_engine=layout_engine)
        widget._snapshot = snapshot  # page turns re-read it
        return widget

    @classmethod
    def from_progress(
        cls,
        progress: RunProgress,
        *,
        now: float | None = None,
        layout: Layout | None = None,
        layout_engine: LayoutEngine = "auto",
    ) -> RunWidget:
        """A widget showing ``progress`` (arguments as :meth:`from_snapshot`)."""
        widget = cls(workflow_id=progress.workflow_id)
        if layout is None and dot_would_be_used(len(progress.shapes), engine=layout_engine):
            layout = layout_for(progress.shapes, engine=layout_engine)
        widget.dag_layout = layout  # drawn by apply_progress with the nodes
        with widget.hold_sync():
            widget.apply_progress(progress, now=time.time() if now is None else now)
        return widget

    def send_state(self, key: object = None) -> None:
        """Send traits to the frontend without ipywidgets' search for binary buffers.

        Every trait of this widget is plain JSON (no bytes or memoryviews), and the search
        walks each value in Python, every step of a big run's first state.
        """
        state = self.get_state(key=key)
        if not state:
            return
        if self._property_lock:  # keep the lock current with what the frontend will have
            for name, value in state.items():
                if name in self._property_lock:
                    self._property_lock[name] = value
        self._send({"method": "update", "state": state, "buffer_paths": []}, buffers=[])

    def set_layout(self, layout: Layout | None) -> None:
        """Draw the DAG where ``layout`` puts it (``None``: the browser lays it out).

        Steps the layout lacks are drawn by the browser's layout instead.
        """
        shapes = self._shown_shapes or ()
        if layout is not None and not layout.covers(step_id for step_id, _, _ in shapes):
            layout = None
        self.dag_layout = layout
        with self.hold_sync():
            if layout is None:
                self.nodes = [{"id": step_id, "kind": kind} for step_id, kind, _ in shapes]
                self.width = self.height = 0.0
            else:
                self.nodes = viewmodel.node_boxes(layout, shapes)
                self.width = layout.width
                self.height = layout.height

    def apply_snapshot(self, snapshot: RunSnapshot, *, now: float) -> bool:
        """Show ``snapshot``, the current page of its event table; see :meth:`apply_progress`."""
        self._snapshot = snapshot
        progress = RunProgress.of_snapshot(
            snapshot, event_offset=self.event_offset, event_limit=self.event_page_rows
        )
        grew = self.apply_progress(progress, now=now)
        if self.selected_step is not None and self._details_request is None:
            self.show_details(self.selected_step)
        if self.timeline_open and self._timeline_request is None:
            self.timeline = snapshot_timeline_json(snapshot, now=now)
        return grew

    def apply_progress(self, progress: RunProgress, *, now: float) -> bool:
        """Show ``progress``; only traits that changed are sent.

        Returns:
            True when the run has steps it did not have before (dynamic steps): they are
            drawn at once by the browser's layout, and a Python layout (dot) is now stale.
        """
        self.last_progress = progress
        grew = progress.shapes is not self._shown_shapes and progress.shapes != self._shown_shapes
        events = self._event_rows(progress, now=now)
        with self.hold_sync():
            if grew:
                self._shown_shapes = progress.shapes
                self.edges = [[up, step_id] for step_id, _, upstream in progress.shapes for up in upstream]
                self.set_layout(self.dag_layout)
            self.status = progress.status.value
            self.error = progress.error or ""
            if progress.states != self.states:
                self.states = dict(progress.states)
            if progress.labels is not self._shown_labels:
                self._shown_labels = progress.labels
                labels = viewmodel.labels_json(progress.labels)
                if labels != self.labels:
                    self.labels = labels
            if events != self.events:
                self.events = events
            self.event_offset = progress.event_offset
            self.event_total = progress.event_total
            self.now = now
            self.version = progress.version
        return grew

    def _event_rows(self, progress: RunProgress, *, now: float) -> list[dict[str, object]]:
        start = progress.started_at
        cache = self._row_cache
        fresh: dict[str, tuple[StepSnapshot, object, dict[str, object]]] = {}
        rows: list[dict[str, object]] = []
        for step in progress.events:
            hit = cache.get(step.step_id)
            if (
                hit is not None
                and hit[2]["time_left"] is None  # a running timer's time left moves with `now`
                and hit[1] == start
                and (hit[0] is step or hit[0] == step)
            ):
                row = hit[2]
            else:
                row = viewmodel.event_row(step, started_at=start, now=now)
            fresh[step.step_id] = (step, start, row)
            rows.append(row)
        self._row_cache = fresh
        return rows

    def show_page(self, offset: int) -> None:
        """Show the page of the event table that starts at event step ``offset``.

        Call it on the thread that writes the widget. A widget fed snapshots re-reads the
        last one at once; a live one shows the page from its next push.
        """
        self.event_offset = clamp_offset(offset, self.event_total, self.event_page_rows)
        if self._snapshot is not None:
            self.apply_snapshot(self._snapshot, now=self.now)

    def show_details(
        self, step_id: str | None, details: StepDetails | None = None, *, loading: bool = False
    ) -> None:
        """Show the details panel of ``step_id`` (``None``: close it).

        Call it on the thread that writes the widget. Built from the last progress shown
        (and, for a widget fed snapshots, the step's record) plus ``details`` when given:
        what ``RunHandle.step_details_async`` read. An unknown step closes the panel.
        """
        progress = self.last_progress
        state = progress.states.get(step_id) if progress is not None and step_id is not None else None
        if step_id is None or progress is None or state is None:
            self.selected_step = None
            self.details = {}
            return
        self.selected_step = step_id
        kind = next((k for sid, k, _ in progress.shapes if sid == step_id), "function")
        self.details = viewmodel.step_details(
            step_id,
            kind=kind,
            state=state,
            shown_label=progress.labels.get(step_id),
            snapshot=self._record_of(step_id, progress),
            details=details,
            loading=loading,
        )

    def _record_of(self, step_id: str, progress: RunProgress) -> StepSnapshot | None:
        if self._snapshot is not None:
            return next((s for s in self._snapshot.steps if s.step_id == step_id), None)
        return next((s for s in progress.events if s.step_id == step_id), None)

    def on_details_request(self, callback: DetailsRequest | None) -> None:
        """Call ``callback(step_id)`` when a step is selected in the view (``None``: closed).

        Same rules as :meth:`on_send_request`: hand over, do not block or write traits.
        Without a callback the widget shows what it has itself (:meth:`show_details`).
        """
        self._details_request = callback

    def on_timeline_request(self, callback: TimelineRequest | None) -> None:
        """Call ``callback(open)`` when the view opens (``True``) or closes the timeline.

        Same rules as :meth:`on_send_request`: hand over, do not block or write traits.
        Without a callback a widget fed snapshots draws the timeline from them.
        """
        self._timeline_request = callback

    def show_timeline(self, is_open: bool) -> None:
        """Keep the ``timeline`` trait filled while the view shows the timeline.

        Call it on the thread that writes the widget. A widget fed snapshots fills it
        from the last one at once; a live one is filled by its ``LiveRun``.
        """
        self.timeline_open = is_open
        if is_open and self._snapshot is not None:
            self.timeline = snapshot_timeline_json(self._snapshot, now=self.now)

    def set_send_status(self, step_id: str, *, ok: bool, text: str) -> None:
        """Show the outcome of a send next to the step's form (``ok=False``: an error)."""
        self._send_seq += 1
        self.send_status = {**self.send_status, step_id: {"ok": ok, "text": text, "seq": self._send_seq}}

    def on_send_request(self, callback: SendRequest | None) -> None:
        """Call ``callback(step_id, payload_text)`` when a "Send" button is pressed.

        It runs on whatever thread the kernel handles widget messages on (today the main
        thread): it must only hand the request over, never block or write traits.
        """
        self._send_request = callback

    def on_page_request(self, callback: PageRequest | None) -> None:
        """Call ``callback(offset)`` when the view asks for another page of the table.

        Same rules as :meth:`on_send_request`: hand over, do not block or write traits.
        Without a callback the widget shows the page itself (:meth:`show_page`).
        """
        self._page_request = callback

    def _on_frontend_msg(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "page":
            offset = content.get("offset")
            if isinstance(offset, int) and not isinstance(offset, bool):
                if self._page_request is not None:
                    self._page_request(offset)
                else:
                    self.show_page(offset)
            return
        if content.get("type") == "details":
            selected = content.get("step")
            if selected is None or isinstance(selected, str):
                if self._details_request is not None:
                    self._details_request(selected)
                else:
                    self.show_details(selected)
            return
        if content.get("type") == "timeline":
            is_open = content.get("open")
            if isinstance(is_open, bool):
                if self._timeline_request is not None:
                    self._timeline_request(is_open)
                else:
                    self.show_timeline(is_open)
            return
        if content.get("type") != "send":
            return
        step_id, payload = content.get("step"), content.get("payload", "")
        if not isinstance(step_id, str) or not isinstance(payload, str):
            return
        if self._send_request is None:
            logger.warning("evkit: the view of run %r is not live; nothing was sent", self.workflow_id)
            return
        self._send_request(step_id, payload)
