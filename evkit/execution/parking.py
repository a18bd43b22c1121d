"""Steps parked on their wait: no task until the wait's event may be there.

A waiting step would hold a task, its context, and the coroutines of the scheduler, the
event contract, the listener's poll and the source's own wait, all alive for as long as
it waits. A fan-out of many waits keeps hundreds of thousands of such objects alive,
and each of the cyclic GC's full passes walks all of them. When a wait's listener can
say when its event is there (``EventListener.wake_when_ready``), the scheduler parks the
step instead: it is stored and shown as waiting, and holds this future and the
listener's; its task starts when the listener's future resolves.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Protocol


class Scheduler(Protocol):
    """What a parked step needs from the run's scheduler."""

    def start_parked(self, step_id: str) -> asyncio.Task[object]:
        """Start the step's task (its wait then polls); the scheduler registers it."""
        ...

    def unpark(self, step_id: str, wake: asyncio.Future[None]) -> None:
        """The parked step was cancelled before its task started: record that."""
        ...


class ParkedStep(asyncio.Future[object]):
    """The future of a parked step: it resolves as the step's task would.

    Until ``wake`` resolves no task exists; cancelling this future then cancels the wait
    (nothing was taken at its source). Once the task runs, this future follows it, and
    cancelling this future cancels the task.

    Args:
        scheduler: The run's scheduler.
        step_id: The parked step (the wait itself, or the one step that consumes it).
        wake: The listener's future (``wake_when_ready``).
        context: The context the step's task and these callbacks run in, one for all the
            run's parked steps (a callback added without one copies the current context:
            an object more per waiting step).
    """

    __slots__ = ("_context", "_scheduler", "_step_id", "_task", "_wake")

    def __init__(
        self,
        scheduler: Scheduler,
        step_id: str,
        wake: asyncio.Future[None],
        context: contextvars.Context,
    ) -> None:
        super().__init__(loop=wake.get_loop())
        self._scheduler = scheduler
        self._step_id = step_id
        self._wake: asyncio.Future[None] | None = wake
        self._task: asyncio.Task[object] | None = None
        self._context = context
        wake.add_done_callback(self._woken, context=context)

    def _woken(self, _: asyncio.Future[None]) -> None:
        # Also when the wake future failed (the inbox could not be read): the poll then
        # meets the same trouble and reports it as the step's failure.
        if self.done():  # cancelled meanwhile
            return
        self._wake = None
        self._task = self._scheduler.start_parked(self._step_id)
        self._task.add_done_callback(self._follow, context=self._context)

    def _follow(self, task: asyncio.Task[object]) -> None:
        if self.done():  # cancelled: the task was cancelled with it
            if not task.cancelled():
                task.exception()  # retrieved: this future's waiters are gone
            return
        if task.cancelled():
            self.cancel()
        elif (error := task.exception()) is not None:
            self.set_exception(error)
        else:
            self.set_result(task.result())

    def cancel(self, msg: object | None = None) -> bool:
        """Cancel the step: its task, or its parked wait.

        An override rather than a done callback: one object less per waiting step.
        """
        if not super().cancel(msg):
            return False
        if self._task is not None:
            self._task.cancel(msg)
        elif self._wake is not None:
            wake, self._wake = self._wake, None
            self._scheduler.unpark(self._step_id, wake)
        return True
