"""plot_timeline from the store, including for a run finished under an earlier runtime."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.figure import Figure

import evkit
from evkit import workflow
from evkit.notebook.timeline import timeline_bars

pytestmark = pytest.mark.slow  # real runs on a real store


@workflow.step
def prepare() -> int:
    return 1


@workflow.step
def finish(base: int, approval: object, fired: object) -> object:
    return base, approval


def run_with_two_events(workflow_id: str):
    handle = finish.step(
        prepare.step(),
        workflow.wait_for_event(workflow.ManualListener, key="go"),
        workflow.wait_for_event(workflow.TimerListener, 0.0),
    ).run_async(workflow_id=workflow_id)
    workflow.send_event(workflow_id, "go", "yes")
    assert handle.result(timeout=10) == (1, "yes")
    return handle


def test_timeline_has_a_bar_per_step_and_wait_checkpoint_commit_per_event(runtime):
    run_with_two_events("timeline")

    bars, run = timeline_bars("timeline")

    assert run["status"] == "SUCCESSFUL"
    phases = {(b.step_id, b.phase) for b in bars}
    assert {("prepare", "run"), ("finish", "run")} <= phases
    for event_step in ("ManualListener", "TimerListener"):
        assert {(event_step, p) for p in ("waiting", "checkpoint", "commit")} <= phases
    for bar in bars:
        assert 0 <= bar.start <= bar.end
    by_phase = {(b.step_id, b.phase): b for b in bars}
    wait, checkpoint, commit = (by_phase[("ManualListener", p)] for p in ("waiting", "checkpoint", "commit"))
    assert wait.end <= checkpoint.start + 1e-6
    assert checkpoint.end <= commit.start + 1e-6
    assert by_phase[("finish", "run")].start >= commit.end - 1e-6


def test_plot_timeline_draws_a_figure_for_a_run_from_an_earlier_runtime(store_path):
    with workflow.init(storage=store_path, loop="thread"):
        handle = run_with_two_events("earlier")
    workflow.shutdown()
    try:
        workflow.init(storage=store_path, loop="thread")  # a new "kernel" on the same store

        figure = handle.plot_timeline()

        assert isinstance(figure, Figure)
        ax = figure.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert set(labels) == {"prepare", "ManualListener", "TimerListener", "finish"}
        assert ax.get_title() == "earlier (SUCCESSFUL)"
        assert len(ax.patches) >= 2 + 3 * 2
        figure.canvas.draw()  # renders with Agg without error
    finally:
        workflow.shutdown()


def test_plot_timeline_of_an_unknown_run_names_it(runtime):
    with pytest.raises(
        evkit.WorkflowNotFoundError, match=r"^Run 'nope' is not in the store; nothing to plot\."
    ):
        evkit.plot_timeline("nope")


def test_plot_timeline_draws_into_given_axes(runtime):
    run_with_two_events("axes")
    figure = Figure()
    ax = figure.add_subplot()
    assert evkit.plot_timeline("axes", ax=ax) is figure
    assert ax.get_title() == "axes (SUCCESSFUL)"
