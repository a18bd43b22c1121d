"""Time sources: the wall clock, and a fake one tests move by hand.

Timers keep absolute deadlines (seconds since the epoch), so a restarted run waits only
the time that is left. Everything that waits for a deadline asks the clock, never
``time.time()`` directly.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Protocol, final


class Clock(Protocol):
    """What evkit needs from a clock."""

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
        while (left := deadline - time.time()) > 0:
            await asyncio.sleep(left)


@final
class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers are woken on the loop they slept on, so the fake works from any thread.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._counter = 0

    def now(self) -> float:
        """The fake time."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` moves the clock to ``deadline`` or past it."""
        if deadline <= self._now:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._counter += 1
        heapq.heappush(self._sleepers, (deadline, self._counter, loop, future))
        await future

    @property
    def sleepers(self) -> int:
        """How many waits are pending (cancelled ones included until the next advance)."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"`seconds` must not be negative, got {seconds!r}")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, loop, future = heapq.heappop(self._sleepers)
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
