"""The 200-node DAG stays cheap: bounds far above what docs/notebook.md measured, so the
test fails on a regression (say, re-sending the layout on every push), not on noise."""

from __future__ import annotations

import json
import statistics
import time

from _ui_snapshots import grid

from evkit.model import RunSnapshot, StepSnapshot
from evkit.notebook.widget import RunWidget


def test_200_node_widget_has_small_initial_state_and_small_cheap_updates():
    snapshot = grid()
    started = time.perf_counter()
    widget = RunWidget.from_snapshot(snapshot)
    build_seconds = time.perf_counter() - started
    sent: list[dict] = []
    widget.comm.send = lambda data=None, buffers=None, **_: sent.append(data)

    durations = []
    steps = list(snapshot.steps)
    for i in range(50):
        s = steps[i]
        steps[i] = StepSnapshot(
            step_id=s.step_id, name=s.name, kind=s.kind, state="done", upstream=s.upstream
        )
        update = RunSnapshot(workflow_id="grid", status=snapshot.status, steps=tuple(steps), version=i + 1)
        t = time.perf_counter()
        widget.apply_snapshot(update, now=time.time())
        durations.append(time.perf_counter() - t)

    data = {k: v for k, v in widget.get_state().items() if not k.startswith("_")}
    assert build_seconds < 2.0
    assert len(json.dumps(data)) < 100_000
    assert len(sent) == 50  # one message per push (hold_sync groups the traits)
    assert all("nodes" not in m["state"] and "edges" not in m["state"] for m in sent)
    assert statistics.median(len(json.dumps(m)) for m in sent) < 10_000
    assert statistics.median(durations) < 0.02
