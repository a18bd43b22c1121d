"""One run of a workflow on the event loop, split by concern.

- :mod:`~evkit.execution.run`: the scheduler (a task per step, stored results reused);
- :mod:`~evkit.execution.events`: the event contract (poll, checkpoint, commit);
- :mod:`~evkit.execution.functions`: function steps (executors, retries, continuations);
- :mod:`~evkit.execution.tracker`: step states, snapshots and subscribers;
- :mod:`~evkit.execution.deadlines`: a poll bounded by its wait's timeout;
- :mod:`~evkit.execution.failures`: a failed run's error, kept in and rebuilt from the store;
- :mod:`~evkit.execution.scope`: what those parts share;
- :mod:`~evkit.execution.plan`: what a re-run of a stored run reuses (pure, no store);
- :mod:`~evkit.execution.prints`: step fingerprints, and the record of them a run stores;
- :mod:`~evkit.execution.definitions`: a run's definitions in the store (new, re-run,
  fork, resume);
- :mod:`~evkit.execution.parking`: steps parked on their wait, with no task until its
  event may be there.
"""

from __future__ import annotations

from evkit.execution.events import TIMEOUT_DEFAULT_SOURCE as TIMEOUT_DEFAULT_SOURCE
from evkit.execution.failures import failure_blob as failure_blob, failure_from_store as failure_from_store
from evkit.execution.run import RunExecution as RunExecution

__all__ = ["TIMEOUT_DEFAULT_SOURCE", "RunExecution", "failure_blob", "failure_from_store"]
