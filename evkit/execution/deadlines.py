"""A poll bounded by its wait's ``timeout_seconds``, measured on the run's clock.

The clock is the runtime's (a ``FakeClock`` in tests), not the loop's, so the timeout is
an absolute deadline that a resumed wait keeps.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evkit.clock import Clock
    from evkit.listeners.base import EventListener


class TimedOut(Exception):
    """The wait's own ``timeout_seconds`` passed (not a TimeoutError from the listener)."""


async def poll_until(
    clock: Clock,
    listener: EventListener,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    timeout_at: float,
) -> object:
    """Await the listener's poll until ``timeout_at`` (epoch seconds on ``clock``).

    Raises:
        TimedOut: ``timeout_at`` passed first (the poll was cancelled).
    """
    try:
        async with asyncio.timeout(None) as scope:
            expiry = asyncio.get_running_loop().create_task(_expire(clock, timeout_at, scope))
            try:
                return await listener.poll_for_event(*args, **kwargs)
            finally:
                expiry.cancel()
    except TimeoutError:
        if scope.expired():
            raise TimedOut from None
        raise


async def _expire(clock: Clock, deadline: float, scope: asyncio.Timeout) -> None:
    await clock.sleep_until(deadline)
    scope.reschedule(asyncio.get_running_loop().time())
