"""Ray-compatible module name: ``workflow.event_listener.TimerListener``."""

from __future__ import annotations

from evkit.listeners.base import (
    Event as Event,
    EventListener as EventListener,
    TimerListener as TimerListener,
)

__all__ = ["Event", "EventListener", "TimerListener"]
