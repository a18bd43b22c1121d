"""Time sources: the wall clock, and a fake one tests move by hand.

Timers keep absolute deadlines (seconds since the epoch), so a restarted run waits only
the time that is left. Everything that waits for a deadline asks the clock, never
``time.time()`` directly.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from typing import Protocol, final


class Clock(Protocol):
    """What evkit needs from a clock.

    A clock may also offer ``alarm(deadline) -> asyncio.Future[None]`` (both of evkit's
    do): timer waits then wait on that future alone, without a task (see
    ``TimerListener.wake_when_ready``).
    """

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once if it already is)."""
        ...


@final
class WallClock:
    """The real clock: ``time.time()`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep on the running loop until ``deadline``; no thread is held."""
        # asyncio.sleep may wake a little early (loop clock vs wall clock): sleep again.
        while (left := deadline - time.time()) > 0:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(left)

    def alarm(self, deadline: float) -> asyncio.Future[None]:
        """A future of the running loop that resolves at about ``deadline``.

        Maybe a little early: the loop's clock is not the wall clock. Cancelling the
        future cancels the alarm.
        """
        loop = asyncio.get_running_loop()
        alarm = _Alarm(loop=loop)
        alarm.handle = loop.call_at(loop.time() + (deadline - time.time()), _resolve, alarm)
        return alarm


@final
class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers are woken on the loop they slept on, so the fake works from any thread.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._counter = 0
        self._registered = threading.Condition()

    def now(self) -> float:
        """The fake time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` moves the clock to ``deadline`` or past it."""
        if deadline <= self._now:
            return
        await self.alarm(deadline)

    def alarm(self, deadline: float) -> asyncio.Future[None]:
        """A future of the running loop that resolves once the clock reaches ``deadline``.

        At once if it has; until then it counts as a pending wait (:attr:`sleepers`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if deadline <= self._now:
            future.set_result(None)
            return future
        with self._registered:
            self._counter += 1
            heapq.heappush(self._sleepers, (deadline, self._counter, loop, future))
            self._registered.notify_all()
        return future

    @property
    def sleepers(self) -> int:
        """How many waits are pending (cancelled ones included until the next advance)."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    def wait_for_sleepers(self, count: int, *, timeout_seconds: float = 10.0) -> None:
        """Block the calling thread until ``count`` waits are pending.

        For tests that drive a run on another thread or loop.

        Raises:
            TimeoutError: Fewer waits were pending after ``timeout_seconds``.
        """
        with self._registered:
            if not self._registered.wait_for(lambda: self.sleepers >= count, timeout_seconds):
                raise TimeoutError(
                    f"FakeClock: expected {count} pending waits within {timeout_seconds} s, "
                    f"found {self.sleepers}."
                )

    async def wait_for_sleepers_async(self, count: int, *, timeout_seconds: float = 10.0) -> None:
        """Like :meth:`wait_for_sleepers`, without blocking the running loop."""
        await asyncio.to_thread(self.wait_for_sleepers, count, timeout_seconds=timeout_seconds)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"`seconds` must not be negative, got {seconds!r}")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, loop, future = heapq.heappop(self._sleepers)
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)


class _Alarm(asyncio.Future[None]):
    """A wall-clock alarm's future: cancelling it cancels its timer on the loop."""

    __slots__ = ("handle",)
    handle: asyncio.TimerHandle

    def cancel(self, msg: object | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self.handle.cancel()
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
