"""The seed-compatible namespace: ``from evkit import workflow`` for ``from ray import workflow``.

It holds the same names as Ray Workflows' final API where they apply, plus evkit's
additions (``send_event``, ``ManualListener``, ``sql``).
"""

from __future__ import annotations

import typing

from evkit import event_listener as event_listener
from evkit.api import (
    cancel as cancel,
    delete as delete,
    fork as fork,
    get_metadata as get_metadata,
    get_output as get_output,
    get_runtime as get_runtime,
    get_status as get_status,
    init as init,
    list_all as list_all,
    plot_timeline as plot_timeline,
    resume as resume,
    resume_all as resume_all,
    resume_async as resume_async,
    run as run,
    run_async as run_async,
    send_event as send_event,
    send_events as send_events,
    shutdown as shutdown,
    sleep as sleep,
    sql as sql,
    wait_for_any as wait_for_any,
)
from evkit.context import (
    get_current_step_id as get_current_step_id,
    get_current_workflow_id as get_current_workflow_id,
    get_event_context as get_event_context,
)
from evkit.dag import step as step, wait_for_event as wait_for_event
from evkit.errors import (
    AnswerError as AnswerError,
    EventTimeoutError as EventTimeoutError,
    WorkflowCancellationError as WorkflowCancellationError,
    WorkflowError as WorkflowError,
    WorkflowExecutionError as WorkflowExecutionError,
    WorkflowNotFoundError as WorkflowNotFoundError,
    WorkflowNotResumableError as WorkflowNotResumableError,
)
from evkit.handle import RunHandle as RunHandle
from evkit.lazy_names import lazy_names as _lazy_names
from evkit.listeners.base import EventListener as EventListener, TimerListener as TimerListener
from evkit.listeners.manual import ManualListener as ManualListener
from evkit.model import WorkflowStatus as WorkflowStatus

if typing.TYPE_CHECKING:
    from evkit.asking import ask as ask, pending as pending
    from evkit.listeners.cron import CronListener as CronListener
    from evkit.listeners.files import FileListener as FileListener, FileRecord as FileRecord
    from evkit.listeners.http import HTTPListener as HTTPListener
    from evkit.listeners.kafka import KafkaListener as KafkaListener
    from evkit.listeners.redis_streams import RedisStreamListener as RedisStreamListener
    from evkit.listeners.webhooks import (
        GitHubSignature as GitHubSignature,
        HMACSignature as HMACSignature,
        StripeSignature as StripeSignature,
    )
    from evkit.serve import serve_events as serve_events

# Ray injected every status as a module attribute (workflow.RUNNING, ...).
RUNNING = WorkflowStatus.RUNNING
WAITING = WorkflowStatus.WAITING
SUCCESSFUL = WorkflowStatus.SUCCESSFUL
FAILED = WorkflowStatus.FAILED
CANCELED = WorkflowStatus.CANCELED
RESUMABLE = WorkflowStatus.RESUMABLE

__all__ = [
    "CANCELED",
    "FAILED",
    "RESUMABLE",
    "RUNNING",
    "SUCCESSFUL",
    "WAITING",
    "AnswerError",
    "CronListener",
    "EventListener",
    "EventTimeoutError",
    "FileListener",
    "FileRecord",
    "GitHubSignature",
    "HMACSignature",
    "HTTPListener",
    "KafkaListener",
    "ManualListener",
    "RedisStreamListener",
    "RunHandle",
    "StripeSignature",
    "TimerListener",
    "WorkflowCancellationError",
    "WorkflowError",
    "WorkflowExecutionError",
    "WorkflowNotFoundError",
    "WorkflowNotResumableError",
    "WorkflowStatus",
    "ask",
    "cancel",
    "delete",
    "fork",
    "event_listener",
    "get_current_step_id",
    "get_current_workflow_id",
    "get_event_context",
    "get_metadata",
    "get_output",
    "get_runtime",
    "get_status",
    "init",
    "list_all",
    "pending",
    "plot_timeline",
    "resume",
    "resume_all",
    "resume_async",
    "run",
    "run_async",
    "send_event",
    "serve_events",
    "send_events",
    "shutdown",
    "sleep",
    "sql",
    "step",
    "wait_for_any",
    "wait_for_event",
]


# The sources and the typed questions load on first use: `from evkit import workflow`
# (and a cold start) does not pay for them. The names are here for type checkers, `dir()`
# and `from ... import *`.
_SOURCES = {
    "CronListener": "evkit.listeners.cron",
    "FileListener": "evkit.listeners.files",
    "FileRecord": "evkit.listeners.files",
    "KafkaListener": "evkit.listeners.kafka",
    "HTTPListener": "evkit.listeners.http",
    "RedisStreamListener": "evkit.listeners.redis_streams",
    "GitHubSignature": "evkit.listeners.webhooks",
    "HMACSignature": "evkit.listeners.webhooks",
    "StripeSignature": "evkit.listeners.webhooks",
    "serve_events": "evkit.serve",
    "ask": "evkit.asking",
    "pending": "evkit.asking",
}


__getattr__, __dir__ = _lazy_names(__name__, _SOURCES)
