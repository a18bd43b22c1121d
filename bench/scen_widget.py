"""Scenario 7: the cost of the live widget: the same run with and without it.

The run is scenario 1's cycle of N manual waits. "With" displays the run as a notebook
does for ``display(handle)``: ``evkit.notebook.display.mimebundle(handle, live=True)``
makes the live widget (it subscribes to the run and pushes its progress at most 10 times
a second) and the static fallback stored beside it. The widget modules are imported
before timing in both cases (a notebook has them loaded already). Outside a kernel the
widget has no frontend, so this measures evkit's side: progress reads, trait updates and
the fallback picture.
"""

from __future__ import annotations

import gc
import time

from bench.common import peak_rss_mb, temp_store


def evkit_widget(n: int, with_widget: bool, on_loop: bool = True) -> dict[str, float]:
    from bench.listeners import POLLS, CountingManualListener, collect, handle
    from evkit import workflow

    try:  # imported before timing: a notebook has these loaded already
        import evkit.notebook.live
        import evkit.notebook.widget  # noqa: F401
        from evkit.notebook.display import _live, mimebundle
    except ImportError:  # the notebook extra is missing: a plain 10 Hz snapshot reader
        _live, mimebundle = None, None

    with temp_store() as path:
        runtime = workflow.init(storage=path, loop="thread")

        POLLS.reset(n)
        # Both variants start from a collected heap: a full collection (~60 ms with pandas
        # and pyarrow loaded) falling inside one run and not the other would be most of
        # the difference measured.
        gc.collect()
        start = time.perf_counter()
        node = collect.step(
            *[handle.step(workflow.wait_for_event(CountingManualListener, f"k{i}")) for i in range(n)]
        )
        run = workflow.run_async(node, workflow_id="widget")
        pushes = 0.0
        if with_widget:
            if mimebundle is not None and on_loop:
                # As a notebook cell does in the default loop mode: on the engine's thread.
                runtime.call_soon(lambda _: mimebundle(run, live=True))
            elif mimebundle is not None:
                mimebundle(run, live=True)  # loop="thread": beside the engine, on our thread
            else:
                stop = _start_plain_reader(run)
        POLLS.reached.wait()
        workflow.send_events("widget", [(f"k{i}", i) for i in range(n)])
        assert run.result() == n
        elapsed = time.perf_counter() - start
        if with_widget:
            if mimebundle is not None and _live is not None:
                pushes = float(_live[run].pushes)
            else:
                pushes = float(stop())
        workflow.shutdown()
    kind = "widget" if mimebundle is not None else "plain 10 Hz snapshot reader"
    return {"total_s": elapsed, "pushes": pushes, "rss_mb": peak_rss_mb(), "subscriber": kind}


def _start_plain_reader(run: object):  # type: ignore[no-untyped-def]
    import threading

    stopped = threading.Event()
    count = [0]

    def read() -> None:
        while not stopped.wait(0.1):
            run.snapshot()  # type: ignore[attr-defined]
            count[0] += 1

    threading.Thread(target=read, daemon=True).start()

    def stop() -> int:
        stopped.set()
        return count[0]

    return stop
