"""Measures the widget with a 200-node DAG (numbers for docs/notebook.md).

Run: .venv/bin/python tests/ui/measure_widget.py   (kernel side; browser side if chromium exists)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _ui_snapshots import grid

from evkit import workflow
from evkit.model import RunProgress, RunSnapshot, StepSnapshot
from evkit.notebook.layout import compute_layout
from evkit.notebook.static import render_html
from evkit.notebook.widget import RunWidget


class RecordingComm:
    """Stands in for the kernel comm: keeps the size of every message the widget sends."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def send(self, data=None, buffers=None, **_):
        self.sizes.append(len(json.dumps(data)))


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:.2f} ms, max {max(samples) * 1e3:.2f} ms"


def with_state(snapshot: RunSnapshot, index: int, state: str) -> RunSnapshot:
    steps = list(snapshot.steps)
    s = steps[index]
    steps[index] = StepSnapshot(step_id=s.step_id, name=s.name, kind=s.kind, state=state, upstream=s.upstream)
    return RunSnapshot(
        workflow_id=snapshot.workflow_id,
        status=snapshot.status,
        steps=tuple(steps),
        started_at=snapshot.started_at,
        version=snapshot.version + 1,
    )


def kernel_side() -> dict[str, object]:
    snap = grid()
    pairs = [(s.step_id, s.upstream) for s in snap.steps]
    out: dict[str, object] = {"nodes": len(pairs), "edges": sum(len(u) for _, u in pairs)}
    for engine in ("dot", "layers"):
        if engine == "dot" and shutil.which("dot") is None:
            continue
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            compute_layout(pairs, engine=engine)
            samples.append(time.perf_counter() - t)
        out[f"layout_{engine}"] = ms(samples)
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        widget = RunWidget.from_snapshot(snap, layout_engine="layers")  # as run_widget: the browser lays out
        samples.append(time.perf_counter() - t)
    out["build_widget"] = ms(samples)
    state = widget.get_state()
    data = {k: v for k, v in state.items() if not k.startswith("_")}
    out["initial_state_bytes_data"] = len(json.dumps(data))
    out["initial_state_bytes_with_esm_css"] = len(json.dumps(state))
    layout = compute_layout([(s.step_id, s.upstream) for s in snap.steps])
    t = time.perf_counter()
    html = render_html(RunProgress.of_snapshot(snap), layout, now=time.time())
    out["static_html"] = f"{(time.perf_counter() - t) * 1e3:.2f} ms, {len(html)} bytes"
    comm = RecordingComm()
    widget.comm.send = comm.send  # the DummyComm of a process without a kernel
    samples = []
    current = snap
    for i in range(200):
        current = with_state(current, i, "done")
        t = time.perf_counter()
        widget.apply_snapshot(current, now=time.time())
        samples.append(time.perf_counter() - t)
    out["update_one_state_change"] = ms(samples)
    out["update_message_bytes_median"] = statistics.median(comm.sizes)
    return out


def engine_side() -> dict[str, object]:
    """A real 200-step run, without and with a live widget: does the view slow it down?"""

    @workflow.step
    def node(*_: object) -> int:
        time.sleep(0.01)  # some work, so that the run lasts long enough for several pushes
        return 1

    def build():
        layer = [node.step() for _ in range(20)]
        for _ in range(9):
            layer = [node.step(layer[i], layer[(i + 1) % 20]) for i in range(20)]
        return node.step(*layer)

    from evkit.notebook.display import _live, run_widget

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as d:
        workflow.init(storage=os.path.join(d, "m.duckdb"), loop="thread")
        try:
            times: dict[bool, list[float]] = {False: [], True: []}
            pushes = []
            for i in range(6):  # alternate, after one warm-up run
                show = bool(i % 2)
                handle = build().run_async(workflow_id=f"run-{i}")
                if show:
                    run_widget(handle)
                handle.result(timeout=120)
                # The run's own duration, from the store (building the widget is not in it).
                [(seconds,)] = workflow.sql(
                    "SELECT epoch(ended_at) - epoch(created_at) FROM workflows WHERE workflow_id = ?",
                    [handle.workflow_id],
                ).fetchall()
                times[show].append(seconds)
                if show:
                    pushes.append(_live[handle].pushes)
            out["run_201_steps_without_widget"] = f"median {statistics.median(times[False][1:]):.3f} s"
            out["run_201_steps_with_widget"] = f"median {statistics.median(times[True]):.3f} s"
            out["pushes_per_run"] = pushes
            samples = []
            for _ in range(20):
                t = time.perf_counter()
                handle.snapshot()
                samples.append(time.perf_counter() - t)
            out["handle_snapshot_201_steps_from_other_thread"] = ms(samples)
        finally:
            workflow.shutdown()
    return out


def browser_side() -> dict[str, object]:
    if shutil.which("chromium") is None:
        return {}
    from _js_harness import rendered

    snap = grid()
    widget = RunWidget.from_snapshot(snap)
    out: dict[str, object] = {}
    with rendered(widget) as page:
        out["browser_first_render"] = f"{page.evaluate('window.renderMs'):.1f} ms"
        sync_ms, frame_ms = page.evaluate(
            """async () => {
                const m = window.evkitModel;
                const ids = Object.keys(m.get("states"));
                let t0 = performance.now();
                for (const id of ids) m.set("states", {...m.get("states"), [id]: "running"});
                const sync = (performance.now() - t0) / ids.length;
                t0 = performance.now();
                await new Promise(requestAnimationFrame);
                return [sync, performance.now() - t0];
            }"""
        )
        out["browser_per_update_dom"] = f"{sync_ms:.3f} ms (recolour of 200 nodes)"
        out["browser_next_frame_after_200_updates"] = f"{frame_ms:.1f} ms"
    return out


if __name__ == "__main__":
    for part in (kernel_side, engine_side, browser_side):
        for key, value in part().items():
            print(f"{key}: {value}")
