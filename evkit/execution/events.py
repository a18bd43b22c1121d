"""The event contract: how one event step waits, checkpoints and commits, exactly once.

For each event step, in this order (``docs/design.md``, "The event contract"):

1. a fresh listener is made with its no-argument constructor (:meth:`EventSteps.run`);
2. ``poll_for_event`` is awaited on the loop, with the step's resolved arguments (in
   :meth:`EventSteps.run` itself). A wait whose listener can tell when its event is
   there (``EventListener.wake_when_ready``) is *parked* first: it is shown and stored as
   waiting, but its task, listener and poll start only once the event may be there
   (:meth:`EventSteps.park`), so a waiting step holds a future, not a task and coroutines;
3. the event is checkpointed and **nothing else happens with it until that is durable**
   (:meth:`_checkpoint`);
4. only then is ``event_checkpointed`` awaited, and the commit recorded (:meth:`_commit`);
5. the step's value, for its downstream steps, is exactly the checkpointed event.

On resume, a checkpointed event is never polled again: :meth:`EventSteps.finish_stored`
commits it if its commit was not recorded, and hands the stored event downstream.
"""

from __future__ import annotations

import asyncio
import logging

from evkit import codec
from evkit.context import EventContext, set_context
from evkit.dag import NO_DEFAULT, FlatStep
from evkit.errors import EventTimeoutError, StepFailedError
from evkit.execution.deadlines import TimedOut, poll_until
from evkit.execution.failures import CODE_MISTAKES, NOT_A_FAILURE, one_line
from evkit.execution.scope import RunScope
from evkit.execution.tracker import StepView
from evkit.listeners.base import EventListener
from evkit.listeners.manual import Inbox
from evkit.model import record_maker
from evkit.store import now
from evkit.store.reads import StoredEvent
from evkit.store.rows import EventCheckpointRecord, EventCommitRecord, EventStateRecord

logger = logging.getLogger("evkit")

# The source_id of a checkpoint that holds a wait's `default` after its timeout: nothing
# came from the source, so there is nothing for event_checkpointed to commit.
TIMEOUT_DEFAULT_SOURCE = "evkit:timeout-default"

_make_event_context = record_maker(EventContext)  # one per wait: see record_maker


class EventSteps:
    """Runs the event steps of one run under the event contract.

    Args:
        scope: The run's shared parts.
    """

    def __init__(self, scope: RunScope) -> None:
        self._scope = scope
        self._inbox = scope.services.get(Inbox)
        self._begun: dict[str, int] = {}  # parked waits (see park): their attempt

    async def run(
        self,
        step: FlatStep,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        stored: StoredEvent | None,
    ) -> object:
        """Wait for the step's event, checkpoint it, commit it; return it (steps 1-5).

        ``stored`` is what the store has of this step from an earlier attempt that did not
        checkpoint (its timeout deadline, its poll count), or ``None``.

        Raises:
            StepFailedError: The listener failed, or its event cannot be checkpointed.
            EventTimeoutError: ``timeout_seconds`` passed and the step has no ``default``.
        """
        assert step.listener is not None
        scope = self._scope
        tracker = scope.tracker
        view = tracker.views[step.step_id]
        attempt = self._begun.pop(step.step_id, None)
        if attempt is None:
            listener = step.listener()  # step 1
            attempt = self.begin(step, args, kwargs, stored)
        else:  # parked until now (see park): the wait has begun
            try:
                listener = step.listener()  # step 1
            except BaseException:
                tracker.waiting -= 1
                raise
        set_context(self._context(step, attempt, view.deadline))
        timed_out = False
        try:  # step 2, awaited here: a wait holds no coroutine of evkit's beside the poll's
            try:
                if view.timeout_at is None:
                    event = await listener.poll_for_event(*args, **kwargs)
                else:
                    event = await poll_until(scope.clock, listener, args, kwargs, view.timeout_at)
            finally:
                tracker.waiting -= 1
        except asyncio.CancelledError:
            await self._cancelled(step, listener, args, kwargs, attempt)
            raise
        except TimedOut:
            # The timeout cancelled the poll: its cleanup hook runs as for any cancellation
            # (a wait_for_any's cancels its branches').
            await _call_cleanup(listener, args, kwargs)
            event, timed_out = self._timeout_default(step, attempt), True
        except GeneratorExit:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see NOT_A_FAILURE
            raise self._poll_failed(step, attempt, exc) from exc
        received_at = now()
        tracker.busy += 1
        try:
            tracker.set_state(step.step_id, "received")
            source_id = TIMEOUT_DEFAULT_SOURCE if timed_out else listener.source_id(event)
            await self._checkpoint(step, listener, event, attempt, received_at, source_id)  # step 3
            tracker.set_state(step.step_id, "checkpointed")
            await self._commit(step, listener, event, attempt, call_listener=not timed_out)  # step 4
        finally:
            tracker.busy -= 1
        return event  # step 5

    def begin(
        self,
        step: FlatStep,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        stored: StoredEvent | None,
    ) -> int:
        """Start the step's wait: what the store and the live view show of it; its attempt."""
        tracker = self._scope.tracker
        view = tracker.views[step.step_id]
        self._describe_wait(step, view, args, kwargs, stored)
        view.attempts += 1
        self._log(step, "waiting", view.attempts)
        tracker.set_state(step.step_id, "waiting")
        tracker.waiting += 1
        return view.attempts

    def park(
        self,
        step: FlatStep,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        stored: StoredEvent | None,
    ) -> asyncio.Future[None] | None:
        """Start the wait without polling yet, if its listener can say when its event is there.

        Returns the listener's future (see ``EventListener.wake_when_ready``), which
        resolves when a poll may return at once: only then does the step get a task, whose
        :meth:`run` polls (steps 1-5). ``None``: the wait was not started; run the step's
        task now.
        """
        assert step.listener is not None
        scope = self._scope
        attempt = scope.tracker.views[step.step_id].attempts + 1
        wake = step.listener.wake_when_ready(self._context(step, attempt), args, kwargs)
        if wake is None:
            return None
        try:
            self._begun[step.step_id] = self.begin(step, args, kwargs, stored)
        except Exception:
            # The listener's description failed: the step's own task begins the wait
            # again and fails as any wait does, under the step's name.
            wake.cancel()
            return None
        return wake

    def unpark(self, step: FlatStep, wake: asyncio.Future[None]) -> None:
        """A parked wait was cancelled before it polled: nothing was taken at its source."""
        wake.cancel()
        attempt = self._begun.pop(step.step_id)
        tracker = self._scope.tracker
        tracker.waiting -= 1
        if not self._scope.abandoned:
            self._log(step, "cancelled", attempt)
        tracker.set_state(step.step_id, "cancelled")

    async def finish_stored(self, step: FlatStep, stored: StoredEvent) -> object:
        """The value of a step whose event is checkpointed: never polled again.

        If the commit was not recorded (a crash between steps 3 and 4), the listener's
        ``event_checkpointed`` is called again with the stored event first.
        """
        assert stored.payload_blob is not None
        event = codec.loads(stored.payload_blob)
        if not stored.committed:
            assert step.listener is not None
            attempt = max(stored.poll_attempts, 1)
            set_context(self._context(step, attempt))
            tracker = self._scope.tracker
            tracker.busy += 1
            try:
                call_listener = stored.source_id != TIMEOUT_DEFAULT_SOURCE
                await self._commit(step, step.listener(), event, attempt, call_listener=call_listener)
            finally:
                tracker.busy -= 1
        return event

    # ------------------------------------------------------------------ the steps

    def _describe_wait(
        self,
        step: FlatStep,
        view: StepView,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        stored: StoredEvent | None,
    ) -> None:
        """What the store and the widget show of the wait: its deadlines, arguments, key, label.

        Deadlines are fixed when the wait first starts: a later attempt (after a restart)
        takes the stored ones, so it waits only what is left.
        """
        assert step.listener is not None
        now = self._scope.clock.now()
        if stored is not None and stored.timeout_at is not None:
            view.timeout_at = stored.timeout_at.timestamp()
        elif step.timeout_seconds is not None:
            view.timeout_at = now + step.timeout_seconds
        description = step.listener.describe_wait(args, kwargs, now=now)
        view.inbox_key = description.inbox_key
        view.label = description.label
        if stored is not None and stored.deadline is not None:
            view.deadline = stored.deadline.timestamp()
        else:
            view.deadline = description.deadline
        view.args_text = description.args_text or codec.readable(
            {"args": list(args), "kwargs": kwargs} if kwargs else list(args)
        )
        self._scope.tracker.label_changed(step.step_id)

    async def _cancelled(
        self,
        step: FlatStep,
        listener: EventListener,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        attempt: int,
    ) -> None:
        """The wait was cancelled: run the listener's cleanup hook and record it."""
        if not self._scope.abandoned:
            await _call_cleanup(listener, args, kwargs)
            self._log(step, "cancelled", attempt)
        self._scope.tracker.set_state(step.step_id, "cancelled")

    def _timeout_default(self, step: FlatStep, attempt: int) -> object:
        """The step's ``default`` once its ``timeout_seconds`` passed.

        Raises:
            EventTimeoutError: The step has no ``default``.
        """
        if step.default is NO_DEFAULT:
            error = EventTimeoutError(
                f"Event step {step.step_id!r} of run {self._scope.workflow_id!r} got no event within "
                f"timeout_seconds={step.timeout_seconds!r}.",
                workflow_id=self._scope.workflow_id,
                step=step.step_id,
                timeout_seconds=step.timeout_seconds,
            )
            self._fail(step, attempt, error)
            raise error from None
        return step.default

    def _poll_failed(self, step: FlatStep, attempt: int, exc: BaseException) -> StepFailedError:
        """Record that the listener raised while polling; the error to raise for it.

        It says "resume" only when polling again can help: not for a mistake in the
        listener's code.
        """
        self._fail(step, attempt, exc)
        workflow_id = self._scope.workflow_id
        if isinstance(exc, CODE_MISTAKES):
            advice = (
                "This looks like a mistake in the listener's code, which polling again would "
                f"repeat: fix {listener_name(step)}.poll_for_event, then run the workflow "
                "again (a resume reuses the listener class stored with the run, unless it is "
                "imported from a module you fixed)."
            )
        else:
            advice = f"Resume the run to poll again (workflow.resume({workflow_id!r}))."
        return StepFailedError(
            f"Listener {listener_name(step)} of event step {step.step_id!r} in run "
            f"{workflow_id!r} raised {exc!r} while polling. {advice}",
            workflow_id=workflow_id,
            step=step.step_id,
        )

    def _checkpoint(
        self,
        step: FlatStep,
        listener: EventListener,
        event: object,
        attempt: int,
        received_at: float,
        source_id: str | None,
    ) -> asyncio.Future[None]:
        """Queue the event's checkpoint row; the future resolves once it is durable."""
        scope = self._scope
        try:
            blob = codec.dumps(event)
        except TypeError as exc:
            self._fail(step, attempt, exc)
            raise StepFailedError(
                f"Event step {step.step_id!r} of run {scope.workflow_id!r}: listener "
                f"{type(listener).__qualname__} returned a {type(event).__qualname__} that cannot "
                f"be checkpointed ({exc.__cause__ or exc}). Return picklable data from poll_for_event.",
                workflow_id=scope.workflow_id,
                step=step.step_id,
            ) from exc
        checkpoint = EventCheckpointRecord(  # positional, in field order: one per event
            scope.workflow_id,
            step.step_id,
            attempt,
            now(),
            received_at,
            source_id,
            blob,
            listener.readable(event),
        )
        # An event sent to this waiting step: its checkpoint is also the send's record.
        handover = None
        if source_id is not None and self._inbox is not None:
            handover = self._inbox.taken_by_checkpoint(scope.workflow_id, source_id, blob)
        if handover is None:
            return scope.queue.append(checkpoint)
        sent = handover.record
        try:
            durable = scope.queue.append(
                checkpoint._replace(inbox_key=sent.key, inbox_sent_at=sent.sent_at, inbox_source=sent.source)
            )
        except BaseException as exc:  # the store failed earlier: the send must hear of it too
            handover.fail(exc)
            raise
        handover.settle(durable)
        return durable

    async def _commit(
        self,
        step: FlatStep,
        listener: EventListener,
        event: object,
        attempt: int,
        *,
        call_listener: bool = True,
    ) -> None:
        """Commit the checkpointed event at its source, then record the commit."""
        scope = self._scope
        try:
            if call_listener and _commits_at_source(listener):
                await listener.event_checkpointed(event)
        except NOT_A_FAILURE:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see NOT_A_FAILURE
            self._fail(step, attempt, exc)
            raise StepFailedError(
                f"Listener {type(listener).__qualname__} of event step {step.step_id!r} in run "
                f"{scope.workflow_id!r} raised {exc!r} in event_checkpointed. The event is "
                "checkpointed: resuming the run calls event_checkpointed again.",
                workflow_id=scope.workflow_id,
                step=step.step_id,
            ) from exc
        scope.queue.append(
            EventCommitRecord(
                scope.workflow_id, step.step_id, self._event_id(step), "committed", attempt, now()
            )
        )
        scope.tracker.set_state(step.step_id, "committed")

    # ------------------------------------------------------------------ bookkeeping

    def _fail(self, step: FlatStep, attempt: int, exc: BaseException) -> None:
        view = self._scope.tracker.views[step.step_id]
        view.error = one_line(exc)
        self._log(step, "failed", attempt)
        self._scope.tracker.set_state(step.step_id, "failed")

    def _log(self, step: FlatStep, state: str, attempt: int) -> asyncio.Future[None]:
        """Queue an event row other than its checkpoint and commit (see ``_checkpoint``)."""
        scope = self._scope
        view = scope.tracker.views[step.step_id]
        first = state == "waiting"
        record = EventStateRecord(  # positional, in field order: a few per event
            scope.workflow_id,
            step.step_id,
            self._event_id(step),
            state,
            attempt,
            now(),
            step.listener.__qualname__ if first and step.listener else None,
            view.args_text if first else None,
            view.deadline if first else None,
            view.timeout_at if first else None,
            view.error if state == "failed" else None,
        )
        return scope.queue.append(record)

    def _event_id(self, step: FlatStep) -> str:
        """The event's id: stable over polls, commits and resumes of this step in this run."""
        return f"{self._scope.workflow_id}/{step.step_id}"

    def _context(self, step: FlatStep, attempt: int, deadline: float | None = None) -> EventContext:
        scope = self._scope
        return _make_event_context(
            scope.workflow_id,
            step.step_id,
            attempt,
            scope.clock,
            self._event_id(step),
            scope.services,
            deadline,
        )


def _commits_at_source(listener: EventListener) -> bool:
    """False for listeners that keep the base class's no-op ``event_checkpointed``.

    Most do; skipping the call saves a coroutine per event.
    """
    return type(listener).event_checkpointed is not EventListener.event_checkpointed


async def _call_cleanup(listener: EventListener, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    try:
        await listener.poll_cancelled(*args, **kwargs)
    except NOT_A_FAILURE:
        raise
    except BaseException:  # a failing cleanup must not hide the cancellation (nor stop the loop)
        logger.exception(
            "poll_cancelled of %s raised; the wait is cancelled anyway", type(listener).__qualname__
        )


def listener_name(step: FlatStep) -> str:
    """The step's listener class, as error messages name it."""
    return step.listener.__qualname__ if step.listener is not None else "?"
