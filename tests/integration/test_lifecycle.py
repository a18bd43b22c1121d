"""How a run ends: a cancel that comes after the run finished or races its last event, a
BaseException (SystemExit, KeyboardInterrupt, others) from a listener or a step, and a
step result that cannot be checkpointed. The store, the handle and ``cancel`` must agree,
and the engine must live on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import pytest

import evkit
from evkit import workflow


class Recorder:
    """Shared, in-process record of listener calls (listeners themselves are stateless)."""

    calls: ClassVar[list[tuple[str, object]]] = []


@pytest.fixture(autouse=True)
def _clear_recorder() -> None:
    Recorder.calls = []


@workflow.step
def add(a: int, b: int) -> int:
    return a + b


@workflow.step
def always_fails() -> int:
    raise ValueError("always")


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


# ---------------------------------------------------------------------- cancel of a finished run


def test_cancel_after_successful_changes_nothing_and_says_so(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(add.step(1, 2), workflow_id="done")
    assert handle.result(timeout=10) == 3
    said = (workflow.cancel("done"), handle.cancel())
    assert workflow.get_status("done") is workflow.SUCCESSFUL
    assert workflow.get_output("done") == 3
    assert handle.result(timeout=10) == 3
    assert workflow.resume("done") == 3  # a finished run's resume gives its stored output
    assert evkit.sql("SELECT status FROM run_status_log WHERE status = 'CANCELED'").fetchall() == []
    assert said == (workflow.SUCCESSFUL, workflow.SUCCESSFUL)


def test_cancel_after_failed_changes_nothing_and_says_so(runtime: evkit.Runtime) -> None:
    with pytest.raises(workflow.WorkflowExecutionError):
        always_fails.step().run(workflow_id="broken")
    said = workflow.cancel("broken")
    assert workflow.get_status("broken") is workflow.FAILED
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=r"^Step 'always_fails' of run 'broken' failed after 1 attempt\(s\): ValueError",
    ) as info:
        workflow.get_output("broken")
    assert isinstance(info.value.__cause__, ValueError)
    # Still a FAILED run, not a cancelled one: resume runs it again (and it fails again).
    with pytest.raises(workflow.WorkflowExecutionError, match=r"failed after 2 attempt\(s\): ValueError"):
        workflow.resume("broken")
    assert workflow.list_all() == [("broken", workflow.FAILED)]
    assert said is workflow.FAILED


@pytest.mark.slow  # two runtimes, one after the other
def test_cancel_of_a_cancelled_or_resumable_run_records_canceled_once(store_path: str) -> None:
    workflow.init(storage=store_path, loop="thread")
    workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="k"), workflow_id="left")
    workflow.shutdown()  # RUNNING in the store, owned by nobody: RESUMABLE
    runtime = workflow.init(storage=store_path, loop="thread")
    try:
        assert workflow.get_status("left") is workflow.RESUMABLE
        said = (workflow.cancel("left"), workflow.cancel("left"))
        assert workflow.get_status("left") is workflow.CANCELED
        assert evkit.sql("SELECT count(*) FROM run_status_log WHERE status = 'CANCELED'").fetchall() == [(1,)]
        assert said == (workflow.CANCELED, workflow.CANCELED)
    finally:
        workflow.shutdown()
    assert runtime.closed


# ---------------------------------------------------------------------- cancel racing the last event


class Gate(workflow.EventListener):
    """Waits until the test opens the run's gate; commits at its source with no await in
    between, so a commit is either done or not started when a cancel lands."""

    gates: ClassVar[dict[str, asyncio.Future[str]]] = {}
    committed: ClassVar[set[str]] = set()

    async def poll_for_event(self, key: str) -> str:
        # shield: cancelling the wait must not cancel the test's future.
        return await asyncio.shield(Gate.gates[key])

    async def event_checkpointed(self, event: object) -> None:
        Gate.committed.add(workflow.get_event_context().workflow_id)


async def _until_step_state(handle: evkit.RunHandle, states: set[str]) -> None:
    """Wait (woken by the run's changes) until its one step is in ``states`` or the run ended."""
    changed = asyncio.Event()
    unsubscribe = handle.subscribe(changed.set)
    try:
        while True:
            changed.clear()
            if handle.done() or handle.snapshot().steps[0].state in states:
                return
            await asyncio.wait_for(changed.wait(), 10)
    finally:
        unsubscribe()


@pytest.mark.slow
async def test_cancel_racing_the_event_that_ends_the_run_agrees_with_the_store_and_the_source(
    aruntime: evkit.Runtime,
) -> None:
    # The cancel lands at every point of the event's way: just after the source fired,
    # while the checkpoint is written, after it, after the commit, and after the run ended
    # (then some loop turns later on top, to shift it further). The runs race side by side.
    points: list[set[str] | None] = [set(), {"checkpointed", "committed"}, {"committed"}, None]
    Gate.gates, Gate.committed = {}, set()

    async def race(i: int) -> tuple[str, object, object, object, bool]:
        workflow_id = f"race-{i}"
        Gate.gates[workflow_id] = asyncio.get_running_loop().create_future()
        handle = workflow.run_async(workflow.wait_for_event(Gate, workflow_id), workflow_id=workflow_id)
        await handle.wait_waiting(timeout_seconds=10)
        Gate.gates[workflow_id].set_result(f"event {i}")
        point = points[i % len(points)]
        if point is None:
            await asyncio.wait_for(_output(handle), 10)
        elif point:
            await _until_step_state(handle, point)
        for _ in range(i // len(points) % 5):
            await asyncio.sleep(0)
        said = await handle.cancel_async()
        output = await _output(handle)
        return workflow_id, said, output, handle.status, workflow_id in Gate.committed

    results = await asyncio.gather(*(race(i) for i in range(160)))
    stored = dict(await asyncio.to_thread(workflow.list_all))
    outcomes: Counter[object] = Counter()
    for workflow_id, said, output, status, committed in results:
        # The handle's output, the store, the handle's status and the source agree...
        if output == f"event {workflow_id.removeprefix('race-')}":
            expected: tuple[object, ...] = (workflow.SUCCESSFUL, workflow.SUCCESSFUL, True)
        else:
            assert output == "cancelled", f"run {workflow_id}"
            expected = (workflow.CANCELED, workflow.CANCELED, False)
        assert (stored[workflow_id], status, committed) == expected, f"run {workflow_id}"
        # ...and so does what cancel said.
        assert said is expected[0], f"run {workflow_id}"
        outcomes[said] += 1
    # Both sides of the race were reached.
    assert outcomes[workflow.SUCCESSFUL] >= 40
    assert outcomes[workflow.CANCELED] >= 40


async def _output(handle: evkit.RunHandle) -> object:
    try:
        return await handle
    except workflow.WorkflowCancellationError:
        return "cancelled"


class ThreadGate(workflow.EventListener):
    """A gate the test opens from its own thread while another thread cancels."""

    gates: ClassVar[dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]]] = {}
    waiting: ClassVar[dict[str, threading.Event]] = {}
    committed: ClassVar[dict[str, threading.Event]] = {}

    async def poll_for_event(self, key: str) -> str:
        future = asyncio.get_running_loop().create_future()
        ThreadGate.gates[key] = (asyncio.get_running_loop(), future)
        ThreadGate.waiting[key].set()
        return await asyncio.shield(future)

    async def event_checkpointed(self, event: object) -> None:
        ThreadGate.committed[workflow.get_event_context().workflow_id].set()


def _cancel_after(ready: Callable[[], object], handle: evkit.RunHandle, said: list[object]) -> None:
    ready()
    said.append(handle.cancel())


def _ended(handle: evkit.RunHandle) -> None:
    with contextlib.suppress(workflow.WorkflowCancellationError):
        handle.result(timeout=10)


@pytest.mark.slow
def test_cancel_from_another_thread_racing_the_event_agrees_with_the_store(runtime: evkit.Runtime) -> None:
    ThreadGate.gates, ThreadGate.waiting, ThreadGate.committed = {}, {}, {}
    for i in range(120):
        workflow_id = f"race-{i}"
        ThreadGate.waiting[workflow_id] = threading.Event()
        committed = ThreadGate.committed[workflow_id] = threading.Event()
        node = workflow.wait_for_event(ThreadGate, workflow_id)
        handle = workflow.run_async(node, workflow_id=workflow_id)
        assert ThreadGate.waiting[workflow_id].wait(10)
        loop, future = ThreadGate.gates[workflow_id]
        # The cancel comes together with the event, just after its commit, or after the run.
        start = threading.Barrier(2)
        ready: Callable[[], object] = [
            lambda start=start: start.wait(10),
            lambda committed=committed: committed.wait(10),
            lambda handle=handle: _ended(handle),
        ][i % 3]
        said: list[object] = []
        # A daemon thread: if cancel ever hangs, the test fails instead of hanging at exit.
        canceller = threading.Thread(target=_cancel_after, args=(ready, handle, said), daemon=True)
        canceller.start()
        if i % 3 == 0:
            start.wait(10)
        loop.call_soon_threadsafe(future.set_result, f"event {i}")
        canceller.join(10)
        assert said, f"cancel of run {workflow_id} did not return"
        try:
            output = handle.result(timeout=10)
        except workflow.WorkflowCancellationError:
            output = "cancelled"
        if output == f"event {i}":
            expected: tuple[object, ...] = (workflow.SUCCESSFUL, True)
        else:
            assert output == "cancelled", f"run {workflow_id}"
            expected = (workflow.CANCELED, False)
        stored = workflow.get_status(workflow_id)
        assert (stored, committed.is_set()) == expected, f"run {workflow_id}"
        assert said[0] is expected[0], f"run {workflow_id}"


# ---------------------------------------------------------------------- BaseException from a listener


class Fatal(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


class Sibling(workflow.EventListener):
    """Waits until released (forever, on the first run); records its cleanup and commits."""

    started: ClassVar[asyncio.Event]
    release: ClassVar[bool] = False

    async def poll_for_event(self, key: str) -> str:
        Recorder.calls.append(("poll", key))
        Sibling.started.set()
        if Sibling.release:
            return f"{key} event"
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def poll_cancelled(self, key: str) -> None:
        Recorder.calls.append(("cleanup", key))

    async def event_checkpointed(self, event: object) -> None:
        Recorder.calls.append(("commit", event))


class FatalListener(workflow.EventListener):
    """Raises ``Fatal`` once its sibling waits (until ``fatal`` is switched off)."""

    fatal: ClassVar[bool] = True

    async def poll_for_event(self) -> str:
        await Sibling.started.wait()
        if FatalListener.fatal:
            raise Fatal("boom")
        return "fine"


async def test_base_exception_from_a_listener_cancels_the_sibling_steps_and_records_failed(
    aruntime: evkit.Runtime,
) -> None:
    Sibling.started, Sibling.release, FatalListener.fatal = asyncio.Event(), False, True
    node = collect.step(workflow.wait_for_event(Sibling, "s"), workflow.wait_for_event(FatalListener))
    handle = workflow.run_async(node, workflow_id="b")
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=r"^Listener FatalListener of event step 'FatalListener' in run 'b' raised Fatal\('boom'\) "
        r"while polling\. Resume the run to poll again \(workflow\.resume\('b'\)\)\.$",
    ) as info:
        await handle
    assert isinstance(info.value.__cause__, Fatal)
    # The sibling was cancelled (its cleanup awaited) before the run ended, and it ended FAILED.
    assert Recorder.calls == [("poll", "s"), ("cleanup", "s")]
    assert await asyncio.to_thread(workflow.get_status, "b") is workflow.FAILED
    assert await _rows("SELECT step_id, state FROM events ORDER BY step_id") == [
        ("FatalListener", "failed"),
        ("Sibling", "cancelled"),
    ]
    # A resume polls each wait once more and commits each event once.
    Sibling.started, Sibling.release, FatalListener.fatal = asyncio.Event(), True, False
    assert await workflow.resume_async("b") == ("s event", "fine")
    assert Recorder.calls[2:] == [("poll", "s"), ("commit", "s event")]
    assert await _rows("SELECT step_id, commits FROM events ORDER BY step_id") == [
        ("FatalListener", 1),
        ("Sibling", 1),
    ]


async def _rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


# ---------------------------------------------------------------------- SystemExit / KeyboardInterrupt

_EXITS: dict[str, BaseException] = {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt()}


class ExitingListener(workflow.EventListener):
    async def poll_for_event(self, kind: str) -> str:
        raise _EXITS[kind]


class ExitingCommitListener(workflow.EventListener):
    async def poll_for_event(self, kind: str) -> str:
        return kind

    async def event_checkpointed(self, event: object) -> None:
        assert isinstance(event, str)
        raise _EXITS[event]


@workflow.step
def exits_in_a_thread(kind: str) -> str:
    raise _EXITS[kind]


@workflow.step
async def exits_on_the_loop(kind: str) -> str:
    raise _EXITS[kind]


def _later_calls_work() -> None:
    """What hung once an exception had stopped the engine's loop."""
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="k"), workflow_id="next")
    workflow.send_event("next", "k", 7)
    assert handle.result(timeout=10) == 7
    assert workflow.get_status("next") is workflow.SUCCESSFUL
    assert ("next", workflow.SUCCESSFUL) in workflow.list_all()
    assert workflow.cancel("next") is workflow.SUCCESSFUL


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_system_exit_from_a_listener_fails_its_run_and_the_thread_engine_lives_on(
    runtime: evkit.Runtime, kind: str
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(ExitingListener, kind), workflow_id="x")
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=rf"^Listener ExitingListener of event step 'ExitingListener' in run 'x' raised {kind}\(.*\) "
        r"while polling\.",
    ) as info:
        handle.result(timeout=10)
    assert type(info.value.__cause__).__name__ == kind
    assert workflow.get_status("x") is workflow.FAILED
    assert workflow.cancel("x") is workflow.FAILED
    assert evkit.sql("SELECT state, error FROM events").fetchall() == [
        ("failed", f"{kind}: {_EXITS[kind]}" if str(_EXITS[kind]) else f"{kind}: ")
    ]
    _later_calls_work()


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_system_exit_from_event_checkpointed_fails_its_run_and_the_engine_lives_on(
    runtime: evkit.Runtime, kind: str
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(ExitingCommitListener, kind), workflow_id="c")
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=rf"^Listener ExitingCommitListener of event step 'ExitingCommitListener' in run 'c' raised "
        rf"{kind}\(.*\) in event_checkpointed\.",
    ):
        handle.result(timeout=10)
    assert workflow.get_status("c") is workflow.FAILED
    _later_calls_work()


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
@pytest.mark.parametrize("step", [exits_in_a_thread, exits_on_the_loop], ids=["thread", "loop"])
def test_system_exit_from_a_step_body_fails_its_run_and_the_engine_lives_on(
    runtime: evkit.Runtime, kind: str, step: evkit.StepFunction[[str], str]
) -> None:
    with pytest.raises(
        workflow.WorkflowExecutionError,
        match=rf"^Step '{step.__name__}' of run 's' failed after 1 attempt\(s\): {kind}\(",
    ) as info:
        step.options(max_retries=3, retry_exceptions=True, catch_exceptions=False).step(kind).run(
            workflow_id="s"
        )
    assert type(info.value.__cause__).__name__ == kind
    assert evkit.sql("SELECT state, attempts FROM steps").fetchall() == [("failed", 1)]
    _later_calls_work()


async def test_system_exit_from_a_listener_on_the_running_loop_fails_only_its_run(
    aruntime: evkit.Runtime,
) -> None:
    with pytest.raises(
        workflow.WorkflowExecutionError, match=r"raised SystemExit\(3\) while polling"
    ) as info:
        await workflow.run_async(workflow.wait_for_event(ExitingListener, "SystemExit"), workflow_id="x")
    assert isinstance(info.value.__cause__, SystemExit)
    assert await asyncio.to_thread(workflow.get_status, "x") is workflow.FAILED
    assert await add.step(1, 1).run_async(workflow_id="after") == 2


# ---------------------------------------------------------------------- unpicklable result


def test_unpicklable_step_result_shows_the_step_failed_with_its_error(runtime: evkit.Runtime) -> None:
    @workflow.step
    def lock() -> object:
        return threading.Lock()

    with pytest.raises(workflow.WorkflowExecutionError, match="cannot be checkpointed"):
        lock.step().run(workflow_id="u")
    [(state, error)] = evkit.sql("SELECT state, error FROM steps WHERE workflow_id = 'u'").fetchall()
    assert state == "failed"
    assert error == "TypeError: cannot pickle a value of type lock: cannot pickle '_thread.lock' object"
    meta = workflow.get_metadata("u", "lock")
    assert (meta["state"], meta["error"]) == ("failed", error)
    assert workflow.get_status("u") is workflow.FAILED
