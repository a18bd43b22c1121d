"""Function steps: call the body (on its executor), retry it, checkpoint its result.

A body that returns a step node continues the run with that node (a dynamic
continuation): the scheduler runs it and its value becomes this step's result.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, cast

from evkit import codec
from evkit.context import StepContext, set_context
from evkit.dag import FlatDag, FlatStep, StepNode, flatten
from evkit.errors import StepFailedError, WorkerLostError
from evkit.execution.failures import one_line
from evkit.execution.scope import RunScope
from evkit.executors.base import StepCall
from evkit.model import record_maker
from evkit.store import now
from evkit.store.rows import StepRecord

if TYPE_CHECKING:
    from evkit.executors.base import StepExecutor

Continue = Callable[[FlatDag], Awaitable[object]]
"""Runs a continuation's DAG to its output (the scheduler's)."""

# One of each per attempt: see record_maker.
_make_step_context = record_maker(StepContext)
_make_step_call = record_maker(StepCall)


class FunctionSteps:
    """Runs the function steps of one run.

    Args:
        scope: The run's shared parts.
        executors: Executors by name; ``default_executor`` names the one steps use.
        continuations: Stored continuations by step id (a resumed step runs its stored
            continuation instead of its body).
        continue_with: Runs a continuation's DAG (the scheduler's).
    """

    def __init__(
        self,
        scope: RunScope,
        *,
        executors: Mapping[str, StepExecutor],
        default_executor: str,
        continuations: Mapping[str, bytes],
        continue_with: Continue,
    ) -> None:
        self._scope = scope
        self._executors = executors
        self._default_executor = default_executor
        self._continuations = continuations
        self._continue_with = continue_with
        self._is_async: dict[Callable[..., object], bool] = {}

    async def run(self, step: FlatStep, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
        """Run the step's body with its retries; checkpoint and return its value.

        Raises:
            StepFailedError: The body failed on its last attempt (``__cause__`` is its
                error), or its value cannot be checkpointed.
        """
        options = step.options
        tracker = self._scope.tracker
        view = tracker.views[step.step_id]
        if step.step_id in self._continuations:
            sub = codec.loads(self._continuations[step.step_id])
            assert isinstance(sub, FlatDag)
            value = await self._continue_with(sub)
            return self.record_success(step, value, view.attempts)
        while True:
            view.attempts += 1
            attempt = view.attempts
            self._log(step, "running", attempt)
            tracker.set_state(step.step_id, "running")
            tracker.busy += 1
            try:
                value = await self._call(step, args, kwargs, attempt)
            except asyncio.CancelledError:
                tracker.busy -= 1
                if not self._scope.abandoned:
                    self._log(step, "cancelled", attempt)
                tracker.set_state(step.step_id, "cancelled")
                raise
            except BaseException as exc:  # not only Exception: see NOT_A_FAILURE
                tracker.busy -= 1
                if isinstance(exc, GeneratorExit):
                    raise
                view.error = one_line(exc)
                self._log(step, "failed", attempt, error=view.error)
                # A SystemExit or KeyboardInterrupt fails the step at once: not retried, not caught.
                failure = exc if isinstance(exc, Exception) else None
                if (
                    failure is not None
                    and attempt <= options.max_retries
                    and _retryable(failure, options.retry_exceptions)
                ):
                    tracker.set_state(step.step_id, "pending")
                    clock = self._scope.clock
                    await clock.sleep_until(clock.now() + options.retry_backoff_seconds * 2 ** (attempt - 1))
                    continue
                tracker.set_state(step.step_id, "failed")
                if failure is not None and options.catch_exceptions:
                    return self.record_success(step, (None, failure), attempt)
                raise StepFailedError(
                    f"Step {step.step_id!r} of run {self._scope.workflow_id!r} failed after {attempt} "
                    f"attempt(s): {exc!r}",
                    workflow_id=self._scope.workflow_id,
                    step=step.step_id,
                ) from exc
            tracker.busy -= 1
            break
        if isinstance(value, StepNode):
            sub = flatten(value, prefix=f"{step.step_id}/")
            self._log(step, "continued", attempt, result=(codec.dumps(sub), repr(value)))
            value = await self._continue_with(sub)
        if options.catch_exceptions:
            value = (value, None)
        return self.record_success(step, value, attempt)

    def record_success(self, step: FlatStep, value: object, attempt: int) -> object:
        """Checkpoint the step's value and mark it done; returns the value.

        Raises:
            StepFailedError: The value cannot be pickled.
        """
        try:
            blob = codec.dumps(value)
        except TypeError as exc:
            # The step's last row said `running`: record that it failed, and why, so the
            # steps view and get_metadata agree with the run's FAILED status.
            view = self._scope.tracker.views[step.step_id]
            view.error = one_line(exc)
            self._log(step, "failed", attempt, error=view.error)
            self._scope.tracker.set_state(step.step_id, "failed")
            raise StepFailedError(
                f"Step {step.step_id!r} of run {self._scope.workflow_id!r} returned a value of type "
                f"{type(value).__qualname__} that cannot be checkpointed: {exc.__cause__ or exc}. "
                "Return picklable data (plain values, dataclasses, DataFrames).",
                workflow_id=self._scope.workflow_id,
                step=step.step_id,
            ) from exc
        self._log(step, "succeeded", attempt, result=(blob, codec.readable(value)))
        self._scope.tracker.set_state(step.step_id, "done")
        return value

    def _call(
        self, step: FlatStep, args: tuple[object, ...], kwargs: dict[str, object], attempt: int
    ) -> Awaitable[object]:
        """What runs one attempt of the step's body: its coroutine, or the executor's.

        A plain function, not a coroutine, so a step in flight holds no frame of it.
        """
        assert step.func is not None
        scope = self._scope
        context = _make_step_context(scope.workflow_id, step.step_id, attempt, scope.clock)
        if self._is_coroutine_function(step.func):
            set_context(context)  # this task's own context: it ends with the step
            return cast("Awaitable[object]", step.func(*args, **kwargs))
        executor = self._executors.get(step.options.executor or self._default_executor)
        if executor is None:
            raise LookupError(
                f"Step {step.step_id!r} asks for executor {step.options.executor!r}, which this runtime "
                f"does not have. Known: {', '.join(map(repr, self._executors))}. Register it with "
                "workflow.init(executors={name: ...})."
            )
        return executor.run(_make_step_call(step.func, args, kwargs, step.options, context))

    def _is_coroutine_function(self, func: Callable[..., object]) -> bool:
        """``inspect.iscoroutinefunction``, asked once per function of the run."""
        try:
            return self._is_async[func]
        except KeyError:
            is_async = self._is_async[func] = inspect.iscoroutinefunction(func)
            return is_async
        except TypeError:  # an unhashable callable
            return inspect.iscoroutinefunction(func)

    def _log(
        self,
        step: FlatStep,
        state: str,
        attempt: int,
        *,
        result: tuple[bytes, str] | None = None,
        error: str | None = None,
    ) -> None:
        blob, text = result if result is not None else (None, None)
        upstream = ",".join(step.upstream) if state == "running" and attempt == 1 else None
        scope = self._scope
        scope.queue.append(
            StepRecord(  # positional, in field order: one of these per step attempt and state
                scope.workflow_id,
                step.step_id,
                step.name,
                step.kind,
                state,
                attempt,
                now(),
                blob,
                text,
                error,
                upstream,
            ),
        )


def _retryable(exc: Exception, retry_exceptions: bool | tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, WorkerLostError):
        return True
    if isinstance(retry_exceptions, tuple):
        return isinstance(exc, retry_exceptions)
    return bool(retry_exceptions)
