"""What a notebook shows for a ``RunHandle`` (``RunHandle._repr_mimebundle_`` calls here).

In a kernel: the live widget, one per handle. Elsewhere: a static picture (SVG + event
table) with a short stable text.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from evkit.errors import EvkitError
from evkit.gcscope import fewer_gc_passes
from evkit.model import RunProgress
from evkit.notebook import static, viewmodel
from evkit.notebook.grouping import group_steps
from evkit.notebook.layout import Layout, layout_for

if TYPE_CHECKING:
    from evkit.handle import RunHandle
    from evkit.notebook.live import LiveRun
    from evkit.notebook.widget import RunWidget

_live: weakref.WeakKeyDictionary[RunHandle, LiveRun] = weakref.WeakKeyDictionary()
_live_lock = threading.Lock()


def in_live_kernel() -> bool:
    """True inside a Jupyter kernel, where widgets have a comm to their frontend.

    False in a terminal IPython or a plain script.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def run_widget(handle: RunHandle, *, min_interval_seconds: float | None = None) -> RunWidget:
    """The live widget of a run: made and subscribed on first use, the same one afterwards.

    Args:
        handle: The run.
        min_interval_seconds: Least time between two updates (default 0.1 s); only used
            when the widget is made.

    Returns:
        The widget; ``display(widget)`` or ``display(handle)`` shows it.
    """
    from evkit.notebook.live import DEFAULT_MIN_INTERVAL_SECONDS, LiveRun
    from evkit.notebook.widget import RunWidget

    with _live_lock:
        live = _live.get(handle)
        if live is not None and live.widget.comm is None:  # the user closed the widget
            live.close()
            live = None
        if live is None:
            # The browser lays the DAG out first; LiveRun swaps in dot's drawing from a
            # worker thread when the DAG is small enough for dot (layout.DOT_MAX_NODES).
            started = time.monotonic()
            # The first state of a big run is thousands of new objects that all live on:
            # made under the normal GC thresholds they set off young collections and at
            # times a full one, which can cost more than the build.
            with fewer_gc_passes():
                widget = RunWidget.from_progress(
                    handle.progress(), now=handle.runtime.clock.now(), layout_engine="layers"
                )
            interval = DEFAULT_MIN_INTERVAL_SECONDS if min_interval_seconds is None else min_interval_seconds
            # Building the widget was its first push: the next one is paced by its cost.
            live = LiveRun(
                handle,
                widget,
                min_interval_seconds=interval,
                first_push=(started, time.monotonic() - started),
            )
            _live[handle] = live
            live.start()
    return live.widget


def mimebundle(
    handle: RunHandle,
    include: object = None,
    exclude: object = None,
    *,
    live: bool | None = None,
) -> dict[str, object]:
    """The display data of a run handle.

    In a live kernel: the widget view, its constant text (``<evkit RunWidget 'wid'>``)
    and, for renderers without widgets, the static picture as ``text/html``. Elsewhere:
    the static picture and ``<evkit run 'wid' STATUS: N steps>``.

    Args:
        handle: The run.
        include: Mime types to keep (IPython's argument; ``None`` keeps all).
        exclude: Mime types to drop.
        live: Force the live (``True``) or static (``False``) form; ``None`` detects.
    """
    if live is None:
        live = in_live_kernel()
    data: dict[str, object] | None = None
    try:
        if live:
            try:
                data = _live_bundle(handle)
            except ImportError:  # anywidget missing: the static picture still works
                data = None
        if data is None:
            progress = handle.progress()
            now = handle.runtime.clock.now()
            data = {
                "text/plain": viewmodel.summary_text(progress),
                "text/html": static.render_html(progress, _layout(progress, None), now=now),
            }
    except EvkitError as exc:  # e.g. the runtime was closed: say so instead of a traceback
        data = {"text/plain": f"<evkit run {handle.workflow_id!r}: cannot be shown ({exc})>"}
    return _filter(data, include, exclude)


def _live_bundle(handle: RunHandle) -> dict[str, object]:
    widget = run_widget(handle)
    bundle = widget._repr_mimebundle_()
    assert bundle is not None  # run_widget never returns a closed widget
    data: dict[str, object] = dict(bundle[0])
    progress = handle.progress()
    data["text/plain"] = repr(widget)
    data["text/html"] = static.render_html(
        progress, _layout(progress, widget.dag_layout), now=handle.runtime.clock.now()
    )
    return data


def _layout(progress: RunProgress, current: Layout | None) -> Layout | None:
    """The static picture's layout: ``None`` for DAGs too big to draw step by step.

    Those that group draw their groups (laid out by ``static.render_html``); others show
    counts only.
    """
    if len(progress.shapes) > static.MAX_DRAWN_STEPS or group_steps(progress.shapes).grouped:
        return None
    if current is not None and current.covers(step_id for step_id, _, _ in progress.shapes):
        return current
    return layout_for(progress.shapes)


def _filter(data: dict[str, object], include: object, exclude: object) -> dict[str, object]:
    if isinstance(include, Iterable) and not isinstance(include, str):
        wanted = set(include)
        data = {k: v for k, v in data.items() if k in wanted}
    if isinstance(exclude, Iterable) and not isinstance(exclude, str):
        unwanted = set(exclude)
        data = {k: v for k, v in data.items() if k not in unwanted}
    return data
