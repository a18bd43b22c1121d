"""Hand-made RunSnapshots for the widget tests (no engine, no loop)."""

from __future__ import annotations

import datetime as dt

from evkit.model import RunSnapshot, StepSnapshot, WorkflowStatus

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def approval_run(*, status: WorkflowStatus = WorkflowStatus.WAITING, version: int = 3) -> RunSnapshot:
    """load -> (timer, approve) -> publish: one step in each interesting state."""
    return RunSnapshot(
        workflow_id="approval",
        status=status,
        version=version,
        started_at=T0,
        steps=(
            StepSnapshot(
                step_id="load",
                name="load",
                kind="function",
                state="done",
                attempts=1,
                state_times={"running": at(0.0), "done": at(0.5)},
            ),
            StepSnapshot(
                step_id="timer",
                name="timer",
                kind="event",
                state="waiting",
                attempts=1,
                upstream=("load",),
                listener="TimerListener",
                args_text="[1767268810.0]",
                state_times={"waiting": at(0.5)},
                deadline=at(10.0),
            ),
            StepSnapshot(
                step_id="approve",
                name="approve",
                kind="event",
                state="waiting",
                attempts=2,
                upstream=("load",),
                listener="ManualListener",
                args_text='{"args": [], "kwargs": {"key": "ok"}}',
                state_times={"waiting": at(0.6)},
                inbox_key="ok",
            ),
            StepSnapshot(
                step_id="publish",
                name="publish",
                kind="function",
                state="pending",
                upstream=("timer", "approve"),
            ),
        ),
    )


def chain(n: int, *, state: str = "pending") -> RunSnapshot:
    """A straight line of ``n`` function steps."""
    steps = tuple(
        StepSnapshot(
            step_id=f"s{i}",
            name="s",
            kind="function",
            state=state,  # type: ignore[arg-type]
            upstream=(f"s{i - 1}",) if i else (),
        )
        for i in range(n)
    )
    return RunSnapshot(workflow_id="chain", status=WorkflowStatus.RUNNING, steps=steps, started_at=T0)


def grid(layers: int = 10, width: int = 20) -> RunSnapshot:
    """``layers`` x ``width`` steps, each taking the results of two steps of the layer
    before (the 200-node DAG of the measurements)."""
    steps = []
    for layer in range(layers):
        for i in range(width):
            ups = (
                () if layer == 0 else tuple(sorted({f"n{layer - 1}_{i}", f"n{layer - 1}_{(i + 1) % width}"}))
            )
            kind = "event" if i % 5 == 0 else "function"
            steps.append(
                StepSnapshot(step_id=f"n{layer}_{i}", name="n", kind=kind, state="pending", upstream=ups)
            )
    return RunSnapshot(workflow_id="grid", status=WorkflowStatus.RUNNING, steps=tuple(steps), started_at=T0)


def fan_in(n: int) -> RunSnapshot:
    """``n`` manual waits (``w0`` ... ``w{n-1}``, keys ``k0`` ...) feeding one ``collect``."""
    waits = tuple(
        StepSnapshot(
            step_id=f"w{i}",
            name="w",
            kind="event",
            state="waiting",
            attempts=1,
            listener="ManualListener",
            state_times={"waiting": at(0.1)},
            inbox_key=f"k{i}",
        )
        for i in range(n)
    )
    collect = StepSnapshot(
        step_id="collect",
        name="collect",
        kind="function",
        state="pending",
        upstream=tuple(s.step_id for s in waits),
    )
    return RunSnapshot(
        workflow_id="fan", status=WorkflowStatus.WAITING, steps=(*waits, collect), started_at=T0
    )
