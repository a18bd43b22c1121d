"""How a step call travels to a cluster worker and its outcome travels back (Dask and Ray).

The kernel pickles the function and each argument separately, so a failure names the
value; the worker runs the body inside a :class:`~evkit.context.StepContext` and returns
a ``(kind, data)`` reply: the pickled result, the pickled exception, or what could not
travel. No cluster library is imported here: the worker side needs only evkit itself.
"""

from __future__ import annotations

import os
import signal
import socket
import traceback
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlsplit

import cloudpickle

from evkit.context import StepContext, reset_context, set_context
from evkit.errors import ClusterConnectionError, RemoteStepError, StepTransportError
from evkit.executors.base import StepCall

ReplyKind = Literal["ok", "error", "load-failed", "result-failed"]
Reply = tuple[ReplyKind, object]

# Steps running in this (worker) process: token -> pid. Lets a kill-on-cancel request
# find the worker process that runs a given step.
_RUNNING: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class Payload:
    """One step call, pickled piece by piece (what a worker receives)."""

    workflow_id: str
    step_id: str
    attempt: int
    token: str
    func: bytes
    args: tuple[bytes, ...]
    kwargs: tuple[tuple[str, bytes], ...]


def type_name(value: object) -> str:
    """``module.Qualname`` of the value's type (just ``Qualname`` for builtins)."""
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _what(call: StepCall, index: int | str | None) -> str:
    if index is None:
        return f"function {getattr(call.func, '__qualname__', call.func)!r}"
    if isinstance(index, int):
        return f"argument {index} (a {type_name(call.args[index])})"
    return f"keyword argument {index!r} (a {type_name(call.kwargs[index])})"


def pack(call: StepCall, *, engine: str, token: str) -> Payload:
    """Pickle the call for a worker.

    Raises:
        StepTransportError: The function or an argument cannot be pickled; the message
            names the step, the value and its type.
    """

    def dumps(value: object, index: int | str | None) -> bytes:
        try:
            return _dumps(value)
        except Exception as exc:  # pickling can raise almost anything
            raise StepTransportError(
                f"Step {call.context.step_id!r} of run {call.context.workflow_id!r} cannot be sent to "
                f"the {engine} cluster: its {_what(call, index)} cannot be pickled ({exc}). Pass "
                "picklable values (plain data, dataclasses, arrays), or create the resource inside "
                "the step."
            ) from exc

    return Payload(
        workflow_id=call.context.workflow_id,
        step_id=call.context.step_id,
        attempt=call.context.attempt,
        token=token,
        func=dumps(call.func, None),
        args=tuple(dumps(arg, i) for i, arg in enumerate(call.args)),
        kwargs=tuple((key, dumps(value, key)) for key, value in call.kwargs.items()),
    )


def run_payload(payload: Payload) -> Reply:
    """Run one step call on a worker (this is the function Dask and Ray execute).

    Returns:
        ``("ok", result_blob)``, ``("error", exception_blob)``, ``("load-failed",
        (index, error_text))`` or ``("result-failed", (type_name, error_text))``.
    """
    where: int | str | None = None
    try:
        func = cloudpickle.loads(payload.func)
        args = []
        for where, blob in enumerate(payload.args):  # noqa: B007 - `where` names the failure
            args.append(cloudpickle.loads(blob))
        kwargs = {}
        for where, blob in payload.kwargs:
            kwargs[where] = cloudpickle.loads(blob)
    except Exception as exc:
        return ("load-failed", (where, _one_line(exc)))
    token = set_context(
        StepContext(workflow_id=payload.workflow_id, step_id=payload.step_id, attempt=payload.attempt)
    )
    _RUNNING[payload.token] = os.getpid()
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        return ("error", _pickle_error(exc))
    finally:
        _RUNNING.pop(payload.token, None)
        reset_context(token)
    try:
        return ("ok", _dumps(value))
    except Exception as exc:
        return ("result-failed", (type_name(value), _one_line(exc)))


def _pickle_error(exc: Exception) -> bytes:
    exc.add_note(
        f"(raised on a worker, pid {os.getpid()}; its traceback:)\n{traceback.format_exc().rstrip()}"
    )
    try:
        return _dumps(exc)
    except Exception as pickle_exc:
        substitute = RemoteStepError(
            f"{type_name(exc)}: {exc} (the exception itself could not be pickled back: {pickle_exc})"
        )
        return _dumps(substitute)


def kill_if_running(token: str, kernel_pid: int, dask_worker: object = None) -> bool:
    """Kill this worker process if it runs the step ``token`` (kill-on-cancel).

    Never kills the kernel's own process (a cluster whose workers are threads in it), nor
    a Dask worker without a nanny (nothing would start it again). Dask passes
    ``dask_worker`` itself.
    """
    pid = _RUNNING.get(token)
    if pid is None or pid == kernel_pid:
        return False
    if dask_worker is not None and not getattr(dask_worker, "nanny", None):
        return False
    os.kill(pid, signal.SIGKILL)
    return True  # pragma: no cover - the process is gone before this returns


def unpack(reply: object, call: StepCall, *, engine: str) -> object:
    """Turn a worker's reply into the step's value, or raise what the body raised.

    Raises:
        StepTransportError: Something could not travel (names the step and the value).
        Exception: The body's own exception.
    """
    step, run = call.context.step_id, call.context.workflow_id
    kind, data = cast("Reply", reply)
    if kind == "ok":
        assert isinstance(data, bytes)
        try:
            return cloudpickle.loads(data)
        except Exception as exc:
            raise StepTransportError(
                f"Step {step!r} of run {run!r} ran on the {engine} cluster, but its result cannot be "
                f"loaded in this process ({_one_line(exc)}). Install here the modules its result "
                "needs, or return plain data."
            ) from exc
    if kind == "error":
        assert isinstance(data, bytes)
        try:
            error: BaseException = cloudpickle.loads(data)
        except Exception as exc:
            error = RemoteStepError(
                f"Step {step!r} of run {run!r} raised on the {engine} cluster an exception that cannot "
                f"be loaded in this process ({_one_line(exc)})."
            )
        raise error
    if kind == "load-failed":
        index, text = cast("tuple[int | str | None, str]", data)
        raise StepTransportError(
            f"Step {step!r} of run {run!r} cannot be loaded on the {engine} worker: its "
            f"{_what(call, index)} failed to unpickle there ({text}). Install the module it needs on "
            "the workers, or define it in the notebook so it travels by value."
        )
    type_text, text = cast("tuple[str, str]", data)
    raise StepTransportError(
        f"Step {step!r} of run {run!r} ran on the {engine} cluster, but its result, a {type_text}, "
        f"cannot be pickled to travel back ({text}). Return picklable data (plain values, "
        "dataclasses, arrays), or keep such objects inside the step."
    )


def check_reachable(address: str, *, default_port: int, timeout_seconds: float, what: str) -> None:
    """Fail fast when nothing listens at ``address`` (``scheme://host:port``).

    Raises:
        ClusterConnectionError: The TCP connection failed or timed out.
    """
    parts = urlsplit(address)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ClusterConnectionError(
            f"{what} address {address!r} is not `scheme://host:port`: {exc}."
        ) from None
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            pass
    except OSError as exc:
        raise ClusterConnectionError(
            f"Cannot reach the {what} at {address!r} within {timeout_seconds:g} s ({exc}). Check that "
            f"the {what} runs and the address is right, or use executor='local'."
        ) from None


def _dumps(value: object) -> bytes:
    blob: bytes = cloudpickle.dumps(value)
    return blob


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0]
