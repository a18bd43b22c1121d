"""The exception tree of evkit. A leaf module: it imports nothing from evkit.

Every error names the object it is about (run id, step, store path) in its message and
carries it as fields too, so callers can react without parsing text::

    EvkitError
    ├── WorkflowError                       (Ray-compatible base; field workflow_id)
    │   ├── WorkflowDefinitionError         (also TypeError: bad DAG or listener)
    │   ├── RunError
    │   │   ├── WorkflowExecutionError      (the run failed; __cause__ is the original error)
    │   │   │   └── StepFailedError         (field step; raised live and from the store)
    │   │   ├── EventTimeoutError           (raised inside the event step)
    │   │   └── WorkflowCancellationError
    │   ├── WorkflowNotFoundError           (also KeyError)
    │   ├── WorkflowNotResumableError
    │   ├── PayloadError                    (also TypeError: an event that cannot be stored)
    │   ├── AnswerError                     (also ValueError: an answer its question refuses)
    │   └── RunStateError                   (also RuntimeError: lifecycle misuse)
    │       └── WorkflowStillActiveError
    ├── ExecutorError
    │   ├── WorkerLostError                 (a worker died: retried per max_retries)
    │   ├── StepTransportError              (also TypeError: a value cannot travel)
    │   ├── RemoteStepError                 (a remote error that could not come back)
    │   └── ClusterConnectionError          (also ConnectionError: init cannot reach it)
    └── StoreError                          (field path)
        ├── StoreLockedError                (another process holds the file; field pid)
        │   └── StoreOwnedElsewhereError    (a client may not run or resume; fields pid, host)
        ├── OwnerUnreachableError           (also ConnectionError: the owner stopped answering)
        ├── ReadOnlyQueryError              (a client's SQL is not one SELECT statement)
        ├── StoreNotFoundError              (a read-only open of a path with no file)
        ├── StoreVersionError               (schema newer than this evkit)
        └── NotAStoreError                  (not an evkit store, or corrupt)

A new error is a class with a docstring, placed in this tree; its fields are annotated
class attributes with a default, e.g. ``step: str | None = None``. ``EvkitError`` takes
them as keyword arguments, refuses unknown ones, and keeps them through pickling.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

# The class default of a field that has none: the field must be given.
_REQUIRED = object()


class EvkitError(Exception):
    """Base class of every error evkit raises on purpose.

    Construct any evkit error with one message and its fields as keywords, e.g.
    ``StepFailedError("Step 'load' of run 'r' failed ...", workflow_id="r", step="load")``.
    Every field is set on the instance (to its class default when not given), and pickling
    keeps the message and the fields, so an error survives a trip to a worker process or
    into the store. ``__cause__`` and tracebacks are not pickled (Python never pickles them).

    Raises:
        TypeError: A keyword is not a field of the class, or a field without a default
            is missing.
    """

    _field_defaults: ClassVar[dict[str, object]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        defaults: dict[str, object] = {}
        for klass in reversed(cls.__mro__):
            if issubclass(klass, EvkitError):
                for name, annotation in inspect.get_annotations(klass).items():
                    if not name.startswith("_") and "ClassVar" not in str(annotation):
                        defaults[name] = getattr(klass, name, _REQUIRED)
        cls._field_defaults = defaults

    def __init__(self, message: str, /, **fields: object) -> None:
        super().__init__(message)
        cls = type(self)
        unknown = sorted(set(fields) - set(cls._field_defaults))
        if unknown:
            raise TypeError(
                f"{cls.__name__}() got unknown field(s) {_quoted(unknown)}. "
                f"Its fields: {_quoted(sorted(cls._field_defaults)) or 'none'}."
            )
        for name, default in cls._field_defaults.items():
            value = fields.get(name, default)
            if value is _REQUIRED:
                raise TypeError(f"{cls.__name__}() needs the field `{name}`.")
            setattr(self, name, value)

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt without calling __init__, so a subclass may give __init__ any signature.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _rebuild(cls: type[BaseException], args: tuple[object, ...], state: dict[str, object]) -> BaseException:
    # cls.__new__ rather than Exception.__new__: OSError subclasses (ConnectionError) need
    # their own __new__.
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class WorkflowError(EvkitError):
    """Base class of workflow errors (the name Ray Workflows used).

    ``workflow_id`` is the run the error is about, or ``None`` when there is none.
    """

    workflow_id: str | None = None


class WorkflowDefinitionError(WorkflowError, TypeError):
    """A workflow, step or listener was defined in a way evkit cannot run.

    Raised where the definition is written (``wait_for_event``, ``.step``), not later.
    """


class RunError(WorkflowError):
    """Something went wrong while a run executed."""


class WorkflowExecutionError(RunError):
    """A run failed. ``__cause__`` is the original error.

    evkit raises its subclass ``StepFailedError``; catch this Ray-compatible name or that one.
    """


class StepFailedError(WorkflowExecutionError):
    """A step raised (after its retries). ``__cause__`` is the step's own exception.

    The same error, with the same message and fields, comes from a live run
    (``run``, ``handle.result()``) and from ``get_output`` of a run that failed earlier.
    ``step`` is the step id, or ``None`` when the run failed outside any step.
    """

    step: str | None = None


class EventTimeoutError(RunError):
    """An event step's ``timeout_seconds`` passed before its event arrived."""

    step: str | None = None
    timeout_seconds: float | None = None


class WorkflowCancellationError(RunError):
    """Raised to whoever waits on the output of a run that was cancelled."""


class WorkflowNotFoundError(WorkflowError, KeyError):
    """No run with this id exists in the store."""

    def __str__(self) -> str:
        # KeyError's __str__ would repr() the message and show it in quotes.
        return str(self.args[0]) if self.args else ""


class WorkflowNotResumableError(WorkflowError):
    """The run cannot be resumed: it is unknown, or it already ended in a final state."""


class PayloadError(WorkflowError, TypeError):
    """An event payload cannot be stored (it cannot be pickled); nothing was stored."""


class AnswerError(WorkflowError, ValueError):
    """An answer to a ``workflow.ask`` question does not fit its model; nothing was stored.

    ``errors`` holds one ``(field, message)`` pair per wrong field (field ``""``: the
    answer as a whole), ``key`` the question's event key.
    """

    key: str | None = None
    errors: tuple[tuple[str, str], ...] = ()


class RunStateError(WorkflowError, RuntimeError):
    """An operation does not fit the run's current state (e.g. starting a running id)."""


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

    path: str | None = None


class StoreLockedError(StoreError):
    """Another process has the store file open for writing, or another open runtime of this one."""

    pid: int | None = None  # the holding process, when DuckDB names it


class StoreOwnedElsewhereError(StoreLockedError):
    """This process is a client of the store's owner, and asked for what only the owner does.

    Runs start, resume and are served by the process that owns the store (see
    docs/design.md, "Working from several processes").
    """

    host: str | None = None  # the owner's host name


class OwnerUnreachableError(StoreError, ConnectionError):
    """A client's request to the store's owner failed: the owner exited or does not answer."""

    pid: int | None = None  # the owner's pid, as its owner file says
    host: str | None = None


class ReadOnlyQueryError(StoreError):
    """SQL sent to the store's owner would change the store: it runs one SELECT statement only."""


class StoreNotFoundError(StoreError):
    """A read-only open found no file at the path (nothing but a runtime creates a store)."""


class StoreVersionError(StoreError):
    """The store was written by a newer evkit (its schema version is unknown here)."""


class NotAStoreError(StoreError):
    """The file exists but is not an evkit store (another DuckDB file, or not DuckDB)."""
