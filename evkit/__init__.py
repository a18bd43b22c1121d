"""evkit: event-driven workflows for Jupyter, checkpointed in DuckDB, exactly-once.

``from evkit import workflow`` gives the Ray-Workflows-compatible namespace; the flat
``evkit`` namespace holds the same plus the types (``RunHandle``, ``RunSnapshot``, ``RunProgress``,
``FakeClock``, the errors).
"""

from __future__ import annotations

import sys
import typing

from evkit.errors import (
    AnswerError as AnswerError,
    ClusterConnectionError as ClusterConnectionError,
    EventTimeoutError as EventTimeoutError,
    EvkitError as EvkitError,
    NotAStoreError as NotAStoreError,
    OwnerUnreachableError as OwnerUnreachableError,
    PayloadError as PayloadError,
    ReadOnlyQueryError as ReadOnlyQueryError,
    RunError as RunError,
    RunStateError as RunStateError,
    StepFailedError as StepFailedError,
    StepTransportError as StepTransportError,
    StoreError as StoreError,
    StoreLockedError as StoreLockedError,
    StoreNotFoundError as StoreNotFoundError,
    StoreOwnedElsewhereError as StoreOwnedElsewhereError,
    StoreVersionError as StoreVersionError,
    WorkerLostError as WorkerLostError,
    WorkflowCancellationError as WorkflowCancellationError,
    WorkflowDefinitionError as WorkflowDefinitionError,
    WorkflowError as WorkflowError,
    WorkflowExecutionError as WorkflowExecutionError,
    WorkflowNotFoundError as WorkflowNotFoundError,
    WorkflowNotResumableError as WorkflowNotResumableError,
    WorkflowStillActiveError as WorkflowStillActiveError,
)
from evkit.lazy_names import lazy_names as _lazy_names

if typing.TYPE_CHECKING:
    from evkit import workflow as workflow
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
    from evkit.asking import (
        PendingQuestions as PendingQuestions,
        StoredQuestion as StoredQuestion,
        ask as ask,
        pending as pending,
    )
    from evkit.client import ClientRuntime as ClientRuntime, RemoteRunHandle as RemoteRunHandle
    from evkit.clock import Clock as Clock, FakeClock as FakeClock, WallClock as WallClock
    from evkit.context import (
        EventContext as EventContext,
        StepContext as StepContext,
        get_current_step_id as get_current_step_id,
        get_current_workflow_id as get_current_workflow_id,
        get_event_context as get_event_context,
    )
    from evkit.dag import (
        StepFunction as StepFunction,
        StepNode as StepNode,
        step as step,
        wait_for_event as wait_for_event,
    )
    from evkit.execution.plan import RunPlan as RunPlan
    from evkit.executors import StepExecutor as StepExecutor
    from evkit.handle import RunHandle as RunHandle
    from evkit.listeners.ask import AskListener as AskListener, OpenQuestion as OpenQuestion
    from evkit.listeners.base import EventListener as EventListener, TimerListener as TimerListener
    from evkit.listeners.cron import CronListener as CronListener
    from evkit.listeners.files import FileListener as FileListener, FileRecord as FileRecord
    from evkit.listeners.http import EventServer as EventServer, HTTPListener as HTTPListener
    from evkit.listeners.kafka import KafkaListener as KafkaListener, KafkaMessage as KafkaMessage
    from evkit.listeners.manual import ManualListener as ManualListener
    from evkit.listeners.redis_streams import (
        RedisStreamListener as RedisStreamListener,
        StreamEntry as StreamEntry,
    )
    from evkit.listeners.webhooks import (
        GitHubSignature as GitHubSignature,
        HMACSignature as HMACSignature,
        StripeSignature as StripeSignature,
    )
    from evkit.model import (
        RunProgress as RunProgress,
        RunSnapshot as RunSnapshot,
        StepOptions as StepOptions,
        StepSnapshot as StepSnapshot,
        WorkflowStatus as WorkflowStatus,
    )
    from evkit.runtime import Runtime as Runtime
    from evkit.serve import serve_events as serve_events

__version__ = "0.1.0"

__all__ = [
    "AnswerError",
    "AskListener",
    "ClientRuntime",
    "Clock",
    "ClusterConnectionError",
    "CronListener",
    "EventContext",
    "EventListener",
    "EventServer",
    "EventTimeoutError",
    "EvkitError",
    "FakeClock",
    "FileListener",
    "FileRecord",
    "GitHubSignature",
    "HMACSignature",
    "HTTPListener",
    "KafkaListener",
    "KafkaMessage",
    "ManualListener",
    "NotAStoreError",
    "OpenQuestion",
    "OwnerUnreachableError",
    "PayloadError",
    "PendingQuestions",
    "ReadOnlyQueryError",
    "RedisStreamListener",
    "RunError",
    "RemoteRunHandle",
    "RunHandle",
    "RunPlan",
    "RunProgress",
    "RunSnapshot",
    "RunStateError",
    "Runtime",
    "StepContext",
    "StepFailedError",
    "StepFunction",
    "StepNode",
    "StepOptions",
    "StepExecutor",
    "StepSnapshot",
    "StepTransportError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreOwnedElsewhereError",
    "StoreVersionError",
    "StoredQuestion",
    "StreamEntry",
    "StripeSignature",
    "TimerListener",
    "WallClock",
    "WorkflowCancellationError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowExecutionError",
    "WorkflowNotFoundError",
    "WorkflowNotResumableError",
    "WorkflowStatus",
    "WorkflowStillActiveError",
    "WorkerLostError",
    "ask",
    "cancel",
    "delete",
    "fork",
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
    "load_ipython_extension",
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
    "workflow",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext evkit``: registers the ``%evkit_sql`` / ``%%evkit_sql`` magics."""
    from evkit.notebook.magic import load_ipython_extension as load

    load(ipython)


def _install_short_tracebacks() -> None:
    # Inside IPython, evkit's own errors show the user's frames and the message, not 40
    # lines of engine internals (evkit.notebook.tracebacks; %tb still shows everything).
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        from evkit.notebook.tracebacks import install_short_tracebacks

        install_short_tracebacks(shell)


_install_short_tracebacks()


# Every name but the errors loads on first use: `import evkit` (and with it any
# `evkit.X` module, e.g. the `evkit` command's) does not pay for the engine, DuckDB and
# the listeners until a name that needs them is used. A cold `evkit list` answered by the
# store's owner imports only the owner file, the HTTP client and rich. The names are
# here for type checkers, `dir()` and `from ... import *`.
_LAZY = {
    "workflow": "evkit.workflow",
    "cancel": "evkit.api",
    "delete": "evkit.api",
    "fork": "evkit.api",
    "get_metadata": "evkit.api",
    "get_output": "evkit.api",
    "get_runtime": "evkit.api",
    "get_status": "evkit.api",
    "init": "evkit.api",
    "list_all": "evkit.api",
    "plot_timeline": "evkit.api",
    "resume": "evkit.api",
    "resume_all": "evkit.api",
    "resume_async": "evkit.api",
    "run": "evkit.api",
    "run_async": "evkit.api",
    "send_event": "evkit.api",
    "send_events": "evkit.api",
    "shutdown": "evkit.api",
    "sleep": "evkit.api",
    "sql": "evkit.api",
    "wait_for_any": "evkit.api",
    "PendingQuestions": "evkit.asking",
    "StoredQuestion": "evkit.asking",
    "ask": "evkit.asking",
    "pending": "evkit.asking",
    "ClientRuntime": "evkit.client",
    "RemoteRunHandle": "evkit.client",
    "Clock": "evkit.clock",
    "FakeClock": "evkit.clock",
    "WallClock": "evkit.clock",
    "EventContext": "evkit.context",
    "StepContext": "evkit.context",
    "get_current_step_id": "evkit.context",
    "get_current_workflow_id": "evkit.context",
    "get_event_context": "evkit.context",
    "StepFunction": "evkit.dag",
    "StepNode": "evkit.dag",
    "step": "evkit.dag",
    "wait_for_event": "evkit.dag",
    "RunPlan": "evkit.execution.plan",
    "StepExecutor": "evkit.executors",
    "RunHandle": "evkit.handle",
    "AskListener": "evkit.listeners.ask",
    "OpenQuestion": "evkit.listeners.ask",
    "EventListener": "evkit.listeners.base",
    "TimerListener": "evkit.listeners.base",
    "EventServer": "evkit.listeners.http",
    "HTTPListener": "evkit.listeners.http",
    "ManualListener": "evkit.listeners.manual",
    "RedisStreamListener": "evkit.listeners.redis_streams",
    "StreamEntry": "evkit.listeners.redis_streams",
    "GitHubSignature": "evkit.listeners.webhooks",
    "HMACSignature": "evkit.listeners.webhooks",
    "StripeSignature": "evkit.listeners.webhooks",
    "RunProgress": "evkit.model",
    "RunSnapshot": "evkit.model",
    "StepOptions": "evkit.model",
    "StepSnapshot": "evkit.model",
    "WorkflowStatus": "evkit.model",
    "Runtime": "evkit.runtime",
    "serve_events": "evkit.serve",
    "CronListener": "evkit.listeners.cron",
    "FileListener": "evkit.listeners.files",
    "FileRecord": "evkit.listeners.files",
    "KafkaListener": "evkit.listeners.kafka",
    "KafkaMessage": "evkit.listeners.kafka",
}


__getattr__, __dir__ = _lazy_names(__name__, _LAZY)
