"""The exception tree of evkit. A leaf module: it imports nothing from evkit.

Every error names the object it is about (run id, step, store path) and carries it as
fields too, so callers can react without parsing text::

    EvkitError
    ├── WorkflowError                       (Ray-compatible base)
    │   ├── WorkflowDefinitionError         (also TypeError: bad DAG or listener)
    │   ├── RunError
    │   │   ├── WorkflowExecutionError      (a step failed; __cause__ is the step's error)
    │   │   │   └── StepFailedError
    │   │   ├── EventTimeoutError           (raised inside the event step)
    │   │   └── WorkflowCancellationError
    │   ├── WorkflowNotFoundError           (also KeyError)
    │   ├── WorkflowNotResumableError
    │   ├── PayloadError                    (also TypeError: an event that cannot be stored)
    │   └── RunStateError                   (also RuntimeError: lifecycle misuse)
    │       └── WorkflowStillActiveError
    ├── ExecutorError
    │   ├── WorkerLostError                 (a worker died: retried per max_retries)
    │   ├── StepTransportError              (also TypeError: a value cannot travel)
    │   ├── RemoteStepError                 (a remote error that could not come back)
    │   └── ClusterConnectionError          (also ConnectionError: init cannot reach it)
    └── StoreError
        ├── StoreLockedError                (another process holds the file)
        ├── StoreVersionError               (schema newer than this evkit)
        ├── NotAStoreError                  (not an evkit store, or corrupt)
        └── CheckpointConflictError
"""

from __future__ import annotations


class EvkitError(Exception):
    """Base class of every error evkit raises on purpose."""


class WorkflowError(EvkitError):
    """Base class of workflow errors (the name Ray Workflows used)."""


class WorkflowDefinitionError(WorkflowError, TypeError):
    """A workflow, step or listener was defined in a way evkit cannot run.

    Raised where the definition is written (``wait_for_event``, ``.step``), not later.
    """


class RunError(WorkflowError):
    """Something went wrong while a run executed."""

    def __init__(self, message: str, *, workflow_id: str | None = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[BaseException], args: tuple[object, ...], state: dict[str, object]) -> BaseException:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class WorkflowExecutionError(RunError):
    """A run failed. ``__cause__`` is the original error raised by the step."""


class StepFailedError(WorkflowExecutionError):
    """A step raised (after its retries). ``__cause__`` is the step's own exception."""

    def __init__(self, message: str, *, workflow_id: str | None = None, step: str | None = None) -> None:
        super().__init__(message, workflow_id=workflow_id)
        self.step = step


class EventTimeoutError(RunError):
    """An event step's ``timeout_seconds`` passed before its event arrived."""

    def __init__(
        self,
        message: str,
        *,
        workflow_id: str | None = None,
        step: str | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        super().__init__(message, workflow_id=workflow_id)
        self.step = step
        self.timeout_seconds = timeout_seconds


class WorkflowCancellationError(RunError):
    """Raised to whoever waits on the output of a run that was cancelled."""


class WorkflowNotFoundError(WorkflowError, KeyError):
    """No run with this id exists in the store."""

    def __init__(self, message: str, *, workflow_id: str | None = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id

    def __str__(self) -> str:
        # KeyError's __str__ would repr() the message and show it in quotes.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class WorkflowNotResumableError(WorkflowError):
    """The run cannot be resumed: it is unknown, or it already ended in a final state."""

    def __init__(self, message: str, *, workflow_id: str | None = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class PayloadError(WorkflowError, TypeError):
    """An event payload cannot be stored (it cannot be pickled); nothing was stored."""


class RunStateError(WorkflowError, RuntimeError):
    """An operation does not fit the run's current state (e.g. starting a running id)."""

    def __init__(self, message: str, *, workflow_id: str | None = None) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class WorkflowStillActiveError(RunStateError):
    """The operation needs the run to be finished, but it is still running."""


class ExecutorError(EvkitError):
    """Base class of errors from where step bodies run (the local pool or a cluster)."""


class WorkerLostError(ExecutorError):
    """The worker running a step died (a system failure).

    The step is retried per ``max_retries`` whatever ``retry_exceptions`` says.
    """


class StepTransportError(ExecutorError, TypeError):
    """A step's function, arguments or result cannot travel to or from the executor."""


class RemoteStepError(ExecutorError):
    """A step body raised an exception that could not be pickled back from its worker.

    The message keeps the original exception's type and text.
    """


class ClusterConnectionError(ExecutorError, ConnectionError):
    """``workflow.init(executor=...)`` could not reach the cluster it names."""


class StoreError(EvkitError):
    """The DuckDB store failed or refused an operation. ``path`` names the file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class StoreLockedError(StoreError):
    """Another process has the store file open for writing, or another open runtime of this one."""


class StoreVersionError(StoreError):
    """The store was written by a newer evkit (its schema version is unknown here)."""


class NotAStoreError(StoreError):
    """The file exists but is not an evkit store (another DuckDB file, or not DuckDB)."""


class CheckpointConflictError(StoreError):
    """Two writers tried to record different outcomes for the same checkpoint."""
