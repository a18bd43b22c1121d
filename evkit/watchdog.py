"""Notices when the engine's loop stops answering, and asks the engine who is to blame.

A daemon thread pings the loop (``call_soon_threadsafe``) while the engine has live runs.
While a ping goes unanswered, the thread samples the loop thread's current stack
(``sys._current_frames``) a few times per ``threshold_seconds`` and hands it to
``describe``; when the same culprit frame is found in every sample for
``threshold_seconds``, its description is logged, once per stall. A busy loop running
many short callbacks shows different frames, so it is not mistaken for a blocked one.
Nothing runs on the loop but the pings, so events cost nothing extra, and nothing
process-wide changes (asyncio's debug mode stays off). The loop side takes no lock: the
thread is owned through a token only the loop thread sets.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types
from collections.abc import Callable

logger = logging.getLogger("evkit")


class LoopWatchdog:
    """Warns about code that blocks ``loop`` for longer than ``threshold_seconds``.

    Args:
        loop: The loop to watch; create the watchdog on its thread.
        threshold_seconds: How long the loop may stay unresponsive before a warning.
        is_active: Whether there is anything to watch (called from the watchdog thread);
            the thread ends when it returns False, and :meth:`ensure_running` starts it again.
        describe: Given the loop thread's innermost frame, the culprit's frame and what to
            say about it, or ``None`` when it is none of evkit's business (a notebook cell
            computing). Called from the watchdog thread while the loop is unresponsive.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold_seconds: float,
        is_active: Callable[[], bool],
        describe: Callable[[types.FrameType], tuple[types.FrameType, str] | None],
    ) -> None:
        self.threshold_seconds = threshold_seconds
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._is_active = is_active
        self._describe = describe
        self._beats = 0  # written on the loop thread only
        self._owner: object | None = None  # the running thread's token; set on the loop thread
        self._stopped = False

    def ensure_running(self) -> None:
        """Start the watchdog thread if none runs (call it on the loop thread)."""
        if self._owner is not None or self._stopped:
            return
        token = object()
        self._owner = token
        threading.Thread(target=self._watch, args=(token,), name="evkit-watchdog", daemon=True).start()

    def stop(self) -> None:
        """Let the thread end at its next wake-up (it is a daemon: nothing waits for it)."""
        self._stopped = True

    def _beat(self) -> None:
        self._beats += 1

    def _watch(self, token: object) -> None:
        slice_seconds = self.threshold_seconds / _SAMPLES
        while self._owner is token and not self._stopped:
            if not self._is_active():
                # Hand over ownership before the last look, so a run that starts meanwhile
                # either sees no owner (and starts a thread) or is seen here.
                self._owner = None
                if self._is_active() and self._owner is None:
                    self._owner = token
                    continue
                return
            seen = self._beats
            try:
                self._loop.call_soon_threadsafe(self._beat)
            except RuntimeError:  # the loop is closed
                return
            # Plain sleeps: an Event the loop thread set would take a lock there.
            time.sleep(slice_seconds)
            if self._beats != seen:
                time.sleep(self.threshold_seconds - slice_seconds)  # two pings a second at 0.5 s
                continue
            self._follow_stall(seen, slice_seconds)

    def _follow_stall(self, seen: int, slice_seconds: float) -> None:
        """Sample the stack until the loop answers; warn once if one culprit holds it."""
        culprit: types.FrameType | None = None
        since = 0.0
        warned = False
        while self._beats == seen and not self._stopped and self._loop.is_running():
            frame = sys._current_frames().get(self._loop_thread)
            found = self._describe(frame) if frame is not None else None
            del frame
            now = time.monotonic()
            if found is None:
                culprit = None
            elif found[0] is not culprit:
                culprit, since = found[0], now
            elif not warned and now - since >= self.threshold_seconds - slice_seconds / 2:
                logger.warning(found[1])
                warned = True
            found = None
            time.sleep(slice_seconds)


# Stack samples per threshold while the loop does not answer.
_SAMPLES = 5
