"""What the parts of one run's execution share: its id, the store queue, the clock, the tracker.

Plain data, made by :class:`~evkit.execution.run.RunExecution` and handed to the step
runners, so none of them needs the scheduler itself.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from evkit.execution.tracker import RunTracker
from evkit.services import ServiceRegistry

if TYPE_CHECKING:
    from evkit.clock import Clock
    from evkit.store import WriteQueue


@dataclasses.dataclass(slots=True, kw_only=True)
class RunScope:
    """One run's shared parts.

    Attributes:
        workflow_id: The run's id.
        queue: The store's write queue (on the run's loop).
        clock: The runtime's clock.
        tracker: The run's live step states.
        services: What listeners may use (``EventContext.services``).
        abandoned: Set when the engine shuts down: record nothing more.
    """

    workflow_id: str
    queue: WriteQueue
    clock: Clock
    tracker: RunTracker
    services: ServiceRegistry
    abandoned: bool = False
