"""Notices when the engine's loop stops answering, and asks the engine who is to blame.

A daemon thread pings the loop (``call_soon_threadsafe``) while the engine has live runs.
When a ping goes unanswered for ``threshold_seconds``, the thread reads the loop thread's
current stack (``sys._current_frames``) and hands it to ``describe``; a description is
logged once per stall. Nothing runs on the loop but the pings, so events cost nothing
extra, and nothing process-wide changes (asyncio's debug mode stays off). The loop side
takes no lock: the thread is owned through a token only the loop thread sets.
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
        describe: Given the loop thread's innermost frame, what is blocking and what to do,
            or ``None`` when it is none of evkit's business (a notebook cell computing).
            Called from the watchdog thread while the loop is blocked.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold_seconds: float,
        is_active: Callable[[], bool],
        describe: Callable[[types.FrameType], str | None],
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
        warned: str | None = None
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
            # A plain sleep: an Event the loop thread set would take a lock there.
            time.sleep(self.threshold_seconds)
            if self._beats != seen or not self._loop.is_running():
                warned = None
                continue
            frame = sys._current_frames().get(self._loop_thread)
            description = self._describe(frame) if frame is not None else None
            if description is not None and description != warned:
                logger.warning(description)
                warned = description
