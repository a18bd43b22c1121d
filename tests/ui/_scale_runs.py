"""Runs of realistic shape and size for the widget's scale tests (no engine, no loop).

A fan-out as a user writes it: ``load`` feeds ``branches`` x ``prep`` (function steps),
each prep feeds one manual wait on a key ``order-<i>`` (event steps labelled with their
key, as the engine labels them), a few of them behind a timer, and ``report`` collects
them all. Step ids are the ones ``evkit.dag`` gives repeated names (``prep``,
``prep_1``, ...).
"""

from __future__ import annotations

import datetime as dt

from _ui_snapshots import T0, at

from evkit.model import RunSnapshot, StepSnapshot, WorkflowStatus


def numbered(name: str, i: int) -> str:
    return name if i == 0 else f"{name}_{i}"


def fan_out(branches: int, *, done: int | None = None, timers: int = 0) -> RunSnapshot:
    """``1 + 2 * branches + timers + 1`` steps; the first ``done`` branches have finished."""
    done = branches * 2 // 3 if done is None else done
    steps = [
        StepSnapshot(
            step_id="load",
            name="load",
            kind="function",
            state="done",
            attempts=1,
            state_times={"running": at(0.0), "done": at(0.4)},
        )
    ]
    for i in range(branches):
        finished = i < done
        steps.append(
            StepSnapshot(
                step_id=numbered("prep", i),
                name="prep",
                kind="function",
                state="done" if finished or i % 2 == 0 else "running",
                attempts=1,
                upstream=("load",),
                state_times={"running": at(0.5 + i * 0.001), "done": at(0.9 + i * 0.002)}
                if finished or i % 2 == 0
                else {"running": at(0.5 + i * 0.001)},
            )
        )
    for i in range(timers):
        steps.append(
            StepSnapshot(
                step_id=numbered("sleep", i),
                name="sleep",
                kind="event",
                state="waiting",
                attempts=1,
                upstream=("load",),
                listener="TimerListener",
                state_times={"waiting": at(0.5)},
                deadline=at(3600.0 + 60 * i),
            )
        )
    for i in range(branches):
        finished = i < done
        times = (
            {"waiting": at(1.0), "received": at(2.0 + i * 0.01), "checkpointed": at(2.01 + i * 0.01),
             "committed": at(2.02 + i * 0.01)}
            if finished
            else {"waiting": at(1.0)}
        )  # fmt: skip
        steps.append(
            StepSnapshot(
                step_id=numbered("ManualListener", i),
                name="ManualListener",
                kind="event",
                state="committed" if finished else "waiting",
                attempts=1,
                upstream=(numbered("prep", i),),
                listener="ManualListener",
                args_text=f'{{"args": [], "kwargs": {{"key": "order-{i}"}}}}',
                label=f"order-{i}",
                state_times=times,
                inbox_key=None if finished else f"order-{i}",
            )
        )
    ups = tuple(numbered("ManualListener", i) for i in range(branches))
    ups += tuple(numbered("sleep", i) for i in range(timers))
    steps.append(
        StepSnapshot(step_id="report", name="report", kind="function", state="pending", upstream=ups)
    )
    return RunSnapshot(
        workflow_id=f"fan-out-{len(steps)}",
        status=WorkflowStatus.WAITING,
        version=7,
        steps=tuple(steps),
        started_at=T0,
    )


def small_run() -> RunSnapshot:
    """A 10-step run: 3 branches of prep -> wait, a timer, and two steps after them."""
    base = fan_out(3, done=2, timers=1)
    extra = StepSnapshot(
        step_id="publish", name="publish", kind="function", state="pending", upstream=("report",)
    )
    return RunSnapshot(
        workflow_id="small",
        status=base.status,
        version=base.version,
        steps=(*base.steps, extra),
        started_at=base.started_at,
    )


__all__ = ["T0", "dt", "fan_out", "numbered", "small_run"]
