"""What fails a step, and how a failed run's error is kept in the store and rebuilt from it.

The error a run raised live and the one ``get_output`` raises later from the store are
the same: a :class:`~evkit.errors.StepFailedError` with the same message, ``workflow_id``,
``step`` and, when it could be kept, ``__cause__``.
"""

from __future__ import annotations

import asyncio

from evkit import codec
from evkit.errors import StepFailedError, WorkflowExecutionError

NOT_A_FAILURE = (asyncio.CancelledError, GeneratorExit)
"""What user code may raise that is not a failure of its step: the task's own cancellation,
and the close of a coroutine. Anything else a body or listener raises, ``SystemExit`` and
``KeyboardInterrupt`` included, fails its step: raised out of a task, those two would stop
the engine's loop (asyncio re-raises them from the task into ``run_forever``) and leave
every other run hanging."""

# What a listener's poll raises when its code is wrong (a plain `def poll_for_event` gives a
# TypeError at the await): polling again cannot help, so the error does not suggest a resume.
CODE_MISTAKES = (TypeError, AttributeError, NameError, NotImplementedError, ImportError, SyntaxError)


def one_line(exc: BaseException) -> str:
    """``Type: message``, first line only (for the store's error columns and snapshots)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__


def failure_blob(error: WorkflowExecutionError) -> bytes:
    """What the store keeps of a failed run's error, for :func:`failure_from_store`.

    The error and its cause are pickled apart and kept as a pair of blobs, so a cause that
    cannot be pickled (or, later, loaded) loses only itself. The error is pickled without
    its chain: plain pickle drops ``__cause__`` anyway, but tblib's exception pickling
    (which Dask installs process-wide) would pickle it too, and fail on the cause.
    """
    chain = (error.__cause__, error.__context__, error.__suppress_context__)
    error.__cause__ = error.__context__ = None
    try:
        error_blob = _blob_or_none(error)
    finally:
        error.__cause__, error.__context__, error.__suppress_context__ = chain
    return codec.dumps((error_blob, _blob_or_none(chain[0])))


def failure_from_store(workflow_id: str, blob: bytes | None, text: str | None) -> WorkflowExecutionError:
    """The error a failed run raised, rebuilt from its ``run_status_log`` row.

    It is the error the live run raised (a :class:`StepFailedError` with the same message,
    ``workflow_id`` and ``step``), with the step's exception as ``__cause__`` when that
    could be stored and loaded. Rows written before the pair format (see
    :func:`failure_blob`) hold the cause alone: the error is rebuilt from the row's text.
    """
    error: WorkflowExecutionError | None = None
    cause: object = None
    stored = _load_or_none(blob)
    if isinstance(stored, tuple) and len(stored) == 2:
        error_blob, cause_blob = stored
        loaded = _load_or_none(error_blob)
        error = loaded if isinstance(loaded, WorkflowExecutionError) else None
        cause = _load_or_none(cause_blob)
    else:
        cause = stored
    if error is None:
        error = StepFailedError(f"Run {workflow_id!r} failed: {text}", workflow_id=workflow_id)
    if isinstance(cause, BaseException):
        error.__cause__ = cause
    return error


def _blob_or_none(value: object) -> bytes | None:
    try:
        return codec.dumps(value)
    except TypeError:
        return None


def _load_or_none(blob: object) -> object:
    if not isinstance(blob, bytes):
        return None
    try:
        return codec.loads(blob)
    except Exception:  # a class gone from this process: keep what else can be loaded
        return None
