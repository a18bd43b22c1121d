"""The live view of one run: an anywidget drawing the DAG and the event table.

Its browser half (assets/run_widget.js) draws the DAG from a layout sent once and
recolours nodes from a ``states`` trait. This class holds state only: it starts and
subscribes to nothing (``evkit.notebook.live`` binds it to a run).
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from evkit.model import RunSnapshot, StepSnapshot
from evkit.notebook import viewmodel
from evkit.notebook.layout import Layout, LayoutEngine, compute_layout

logger = logging.getLogger("evkit.notebook")

_ASSETS = pathlib.Path(__file__).parent / "assets"

SendRequest = Callable[[str, str], None]


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


class RunWidget(anywidget.AnyWidget):
    """The DAG of a run coloured by state, and its event table with send forms.

    Build one from a snapshot with :meth:`from_snapshot`; in a notebook, displaying a
    ``RunHandle`` makes and binds one for you (``evkit.notebook.run_widget(handle)``).
    """

    _esm = _ASSETS / "run_widget.js"
    _css = _ASSETS / "run_widget.css"

    workflow_id = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    # Plain List/Dict traits: per-element validation cost 16 ms for a 2,001-step run, and
    # the values are built here, never taken from users.
    nodes: traitlets.List[Any] = traitlets.List().tag(sync=True)
    edges: traitlets.List[Any] = traitlets.List().tag(sync=True)
    width = traitlets.Float(0.0).tag(sync=True)
    height = traitlets.Float(0.0).tag(sync=True)
    states = traitlets.Dict().tag(sync=True)
    events: traitlets.List[Any] = traitlets.List().tag(sync=True)
    now = traitlets.Float(0.0).tag(sync=True)
    send_status = traitlets.Dict().tag(sync=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.dag_layout: Layout | None = None
        self.last_snapshot: RunSnapshot | None = None
        # step_id -> (step, run start, row): rows of unchanged steps are reused, so a
        # push costs what changed, and comparing with the shown rows is mostly identity.
        self._row_cache: dict[str, tuple[StepSnapshot, object, dict[str, object]]] = {}
        self._send_request: SendRequest | None = None
        self._send_seq = 0
        self.on_msg(self._on_frontend_msg)

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
        """A widget showing ``snapshot`` (laid out now unless ``layout`` is given).

        Args:
            snapshot: The run to show.
            now: The clock's time for timers' time left (default: ``time.time()``).
            layout: A precomputed layout.
            layout_engine: How to lay the DAG out when ``layout`` is ``None``.
        """
        widget = cls(workflow_id=snapshot.workflow_id)
        with widget.hold_sync():
            widget.set_layout(layout or layout_for(snapshot, engine=layout_engine), snapshot)
            widget.apply_snapshot(snapshot, now=time.time() if now is None else now)
        return widget

    def send_state(self, key: object = None) -> None:
        """Send traits to the frontend without ipywidgets' search for binary buffers.

        Every trait of this widget is plain JSON (no bytes or memoryviews), and the search
        walks each value in Python: 41 ms per first state of a 2,001-step run.
        """
        state = self.get_state(key=key)
        if not state:
            return
        if self._property_lock:  # keep the lock current with what the frontend will have
            for name, value in state.items():
                if name in self._property_lock:
                    self._property_lock[name] = value
        self._send({"method": "update", "state": state, "buffer_paths": []}, buffers=[])

    def set_layout(self, layout: Layout, snapshot: RunSnapshot | None = None) -> None:
        """Send a new drawing of the DAG (done once, and again when dynamic steps appear)."""
        self.dag_layout = layout
        with self.hold_sync():
            self.nodes = viewmodel.node_boxes(layout, snapshot or self.last_snapshot)
            self.edges = [list(edge) for edge in layout.edges]
            self.width = layout.width
            self.height = layout.height

    def apply_snapshot(self, snapshot: RunSnapshot, *, now: float) -> bool:
        """Show ``snapshot``; only traits that changed are sent.

        Returns:
            True when the snapshot has steps the current layout lacks (re-layout needed).
        """
        self.last_snapshot = snapshot
        states = viewmodel.node_states(snapshot)
        events = self._event_rows(snapshot, now=now)
        with self.hold_sync():
            self.status = snapshot.status.value
            self.error = snapshot.error or ""
            if states != self.states:
                self.states = states
            if events != self.events:
                self.events = events
            self.now = now
            self.version = snapshot.version
        return self.dag_layout is None or not self.dag_layout.covers(states)

    def _event_rows(self, snapshot: RunSnapshot, *, now: float) -> list[dict[str, object]]:
        start = snapshot.started_at
        cache = self._row_cache
        fresh: dict[str, tuple[StepSnapshot, object, dict[str, object]]] = {}
        rows: list[dict[str, object]] = []
        for step in snapshot.steps:
            if step.kind != "event":
                continue
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

    def _on_frontend_msg(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict) or content.get("type") != "send":
            return
        step_id, payload = content.get("step"), content.get("payload", "")
        if not isinstance(step_id, str) or not isinstance(payload, str):
            return
        if self._send_request is None:
            logger.warning("evkit: the view of run %r is not live; nothing was sent", self.workflow_id)
            return
        self._send_request(step_id, payload)


def layout_for(snapshot: RunSnapshot, *, engine: LayoutEngine = "auto") -> Layout:
    """Lay out the steps of a snapshot."""
    return compute_layout([(s.step_id, s.upstream) for s in snapshot.steps], engine=engine)
