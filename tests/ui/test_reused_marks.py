"""The static view and the widget mark the steps whose checkpoint a re-run reused."""

from __future__ import annotations

from evkit.model import RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus
from evkit.notebook.layout import compute_layout
from evkit.notebook.static import render_svg


def _progress() -> RunProgress:
    snapshot = RunSnapshot(
        workflow_id="w1",
        status=WorkflowStatus.RUNNING,
        steps=(
            StepSnapshot(step_id="load", name="load", kind="function", state="done", reused=True),
            StepSnapshot(
                step_id="double", name="double", kind="function", state="running", upstream=("load",)
            ),
        ),
    )
    return RunProgress.of_snapshot(snapshot)


def test_a_reused_step_is_marked_in_the_progress_and_the_static_svg() -> None:
    progress = _progress()
    assert progress.reused == frozenset({"load"})
    svg = render_svg(progress, compute_layout([("load", ()), ("double", ("load",))], engine="layers"))
    assert (
        '<g data-step="load" data-state="done" data-reused="true"><title>load: done (reused)</title>' in svg
    )
    assert '<g data-step="double" data-state="running"><title>double: running</title>' in svg
    assert svg.count('stroke-dasharray="4 2"') == 1


def test_the_widget_gets_the_reused_steps() -> None:
    from evkit.notebook.widget import RunWidget

    snapshot = RunSnapshot(
        workflow_id="w1",
        status=WorkflowStatus.RUNNING,
        steps=(
            StepSnapshot(step_id="load", name="load", kind="function", state="done", reused=True),
            StepSnapshot(
                step_id="double", name="double", kind="function", state="running", upstream=("load",)
            ),
        ),
    )
    widget = RunWidget.from_snapshot(snapshot, now=0.0, layout_engine="layers")
    assert widget.reused == ["load"]
