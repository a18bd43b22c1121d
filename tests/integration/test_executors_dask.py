"""Step bodies on a real Dask LocalCluster (two worker processes) while the waits and the
checkpoints stay on the test's loop: fan-out, a killed worker, cancellation, bad input."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from _cluster_steps import (
    RecordingListener,
    block,
    check_a_dying_worker_is_retried,
    describe,
    fan_out_with_a_wait,
    make_lock,
    pid,
    pid_gone,
    rows,
    step_log,
    touch,
    until,
    wait_for_started,
)
from blockbuster import BlockBuster, blockbuster_ctx

import evkit
from evkit import workflow
from evkit.context import StepContext
from evkit.executors import ClusterConnectionError, DaskExecutor, StepCall, StepTransportError
from evkit.model import StepOptions

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Like the directory's fixture, but only calls made from evkit or these tests count:
    the cluster's own threads run asyncio loops too, and Dask blocks in them on purpose."""
    with blockbuster_ctx(["evkit", "_cluster_steps", __name__]) as bb:
        yield bb


@pytest.fixture(scope="module")
def dask_client() -> Iterator[object]:
    """Two single-threaded worker processes under nannies, started once for the module.
    `allowed_failures=0`: the scheduler reports a dead worker's task at once instead of
    rerunning it, so evkit's own retries (and the store) see every attempt."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            scheduler_kwargs={"allowed_failures": 0},
            resources={"slots": 1},
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture
async def dask_runtime(store_path: str, dask_client: object) -> AsyncIterator[evkit.Runtime]:
    """Engine on the test's loop, steps on the cluster; workers back to two before a test
    (an earlier test may have killed one)."""
    await asyncio.to_thread(dask_client.wait_for_workers, 2, timeout=30)  # type: ignore[attr-defined]
    rt = await asyncio.to_thread(workflow.init, storage=store_path, executor=dask_client)
    yield rt
    await rt.aclose()


async def worker_pids(client: object) -> set[int]:
    return set((await asyncio.to_thread(client.run, os.getpid)).values())  # type: ignore[attr-defined]


async def test_fan_out_of_100_steps_runs_on_the_workers_while_the_wait_stays_on_the_loop(
    dask_runtime: evkit.Runtime, dask_client: object
) -> None:
    RecordingListener.seen = []
    handle = workflow.run_async(fan_out_with_a_wait(100), workflow_id="fan")
    # WAITING means all 100 bodies came back and were checkpointed; only the wait is left.
    await until(lambda: handle.status is workflow.WAITING, timeout_seconds=60)
    assert RecordingListener.seen == [(os.getpid(), threading.get_ident())]
    await asyncio.to_thread(workflow.send_event, "fan", "bonus", 7)
    result = await handle
    assert isinstance(result, dict)
    assert result["sum"] == sum(i * i for i in range(100)) + 7
    assert set(result["pids"]) <= await worker_pids(dask_client)
    assert os.getpid() not in result["pids"]
    assert await rows("SELECT count(*), max(attempts), min(state) FROM steps WHERE name = 'square'") == [
        (100, 1, "succeeded")
    ]
    assert await rows("SELECT state FROM events WHERE workflow_id = 'fan'") == [("committed",)]


async def test_step_whose_worker_dies_is_retried_and_the_store_shows_each_attempt(
    dask_runtime: evkit.Runtime, tmp_path: os.PathLike[str]
) -> None:
    await check_a_dying_worker_is_retried(
        tmp_path, "WorkerLostError: Step 'die_once' of run 'kill': the Dask worker"
    )


async def test_cancelling_a_run_releases_its_task_and_a_running_body_ends_unheard(
    dask_runtime: evkit.Runtime, dask_client: object, tmp_path: os.PathLike[str]
) -> None:
    started, release, done = (os.path.join(os.fspath(tmp_path), n) for n in ("started", "release", "done"))
    handle = workflow.run_async(block.step(started, release, done), workflow_id="cancel")
    await wait_for_started(started)
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert workflow.get_status("cancel") is workflow.CANCELED
    assert [state for state, _, _ in await step_log("cancel", "block")] == ["running", "cancelled"]

    def block_tasks(dask_scheduler: object) -> list[str]:
        return [str(key) for key in dask_scheduler.tasks if "block" in str(key)]  # type: ignore[attr-defined]

    # The scheduler forgot the task; Dask cannot stop a running thread, so the body ends
    # on its own, and its result goes nowhere.
    assert await asyncio.to_thread(dask_client.run_on_scheduler, block_tasks) == []  # type: ignore[attr-defined]
    await asyncio.to_thread(touch, release)
    await until(lambda: os.path.exists(done), off_loop=True)
    assert [state for state, _, _ in await step_log("cancel", "block")] == ["running", "cancelled"]


async def test_cancelling_with_kill_worker_on_cancel_stops_the_body_at_once(
    store_path: str, dask_client: object, tmp_path: os.PathLike[str]
) -> None:
    await asyncio.to_thread(dask_client.wait_for_workers, 2, timeout=30)  # type: ignore[attr-defined]
    executor = DaskExecutor(dask_client, kill_worker_on_cancel=True)
    rt = await asyncio.to_thread(workflow.init, storage=store_path, executor=executor)
    try:
        started, release, done = (
            os.path.join(os.fspath(tmp_path), n) for n in ("started", "release", "done")
        )
        handle = workflow.run_async(block.step(started, release, done), workflow_id="kill-cancel")
        body_pid = await wait_for_started(started)
        await handle.cancel_async()
        with pytest.raises(workflow.WorkflowCancellationError):
            await handle
        assert workflow.get_status("kill-cancel") is workflow.CANCELED
        await until(lambda: pid_gone(body_pid), off_loop=True)
        assert not await asyncio.to_thread(os.path.exists, done)
    finally:
        await rt.aclose()


async def test_step_returning_a_value_that_cannot_travel_fails_naming_the_step_and_type(
    dask_runtime: evkit.Runtime,
) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await make_lock.step().run_async(workflow_id="lock")
    cause = info.value.__cause__
    assert isinstance(cause, StepTransportError)
    assert str(cause).startswith(
        "Step 'make_lock' of run 'lock' ran on the dask cluster, but its result, a _thread.lock, "
        "cannot be pickled to travel back (TypeError: cannot pickle '_thread.lock' object)."
    )


async def test_argument_whose_module_the_workers_lack_fails_naming_the_step_and_type(
    dask_runtime: evkit.Runtime, tmp_path: os.PathLike[str]
) -> None:
    # A class importable in this process only: pickled by reference, unloadable on workers.
    module_dir = os.fspath(tmp_path)
    await asyncio.to_thread(
        pathlib.Path(module_dir, "kernel_only_dask.py").write_text, "class Thing:\n    pass\n"
    )
    sys.path.insert(0, module_dir)
    try:
        import kernel_only_dask  # type: ignore[import-not-found]

        with pytest.raises(workflow.WorkflowExecutionError) as info:
            await describe.step(kernel_only_dask.Thing()).run_async(workflow_id="arg")
    finally:
        sys.path.remove(module_dir)
        sys.modules.pop("kernel_only_dask", None)
    assert str(info.value.__cause__).startswith(
        "Step 'describe' of run 'arg' cannot be loaded on the dask worker: its argument 0 (a "
        "kernel_only_dask.Thing) failed to unpickle there (ModuleNotFoundError: No module named "
        "'kernel_only_dask')."
    )


async def test_argument_that_cannot_be_pickled_fails_before_reaching_the_cluster(dask_client: object) -> None:
    executor = DaskExecutor(dask_client)
    call = StepCall(
        func=repr,
        args=(threading.Lock(),),
        kwargs={},
        options=StepOptions(),
        context=StepContext(workflow_id="w", step_id="send_lock"),
    )
    with pytest.raises(StepTransportError) as info:
        await executor.run(call)
    assert str(info.value).startswith(
        "Step 'send_lock' of run 'w' cannot be sent to the dask cluster: its argument 0 (a _thread.lock) "
        "cannot be pickled (cannot pickle '_thread.lock' object)."
    )
    await executor.aclose()


async def test_per_step_executor_and_resources_reach_the_dask_task(
    store_path: str, dask_client: object
) -> None:
    def restrictions() -> dict[str, float]:
        worker = distributed.get_worker()
        return dict(worker.state.tasks[distributed.worker.thread_state.key].resource_restrictions or {})

    on_cluster = workflow.step(executor="dask", resources={"slots": 1})(restrictions)
    rt = await asyncio.to_thread(workflow.init, storage=store_path, executors={"dask": dask_client})
    try:
        assert await on_cluster.step().run_async(workflow_id="res") == {"slots": 1.0}
        # The runtime's default stays the local pool: a plain step runs in this process.
        assert await pid.step().run_async(workflow_id="local") == os.getpid()
    finally:
        await rt.aclose()


def test_unreachable_scheduler_address_fails_at_init_naming_it_and_keeps_the_runtime(store_path: str) -> None:
    rt = workflow.init(storage=store_path, loop="thread")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"  # nothing listens there any more
    try:
        with pytest.raises(
            ClusterConnectionError, match=rf"^Cannot reach the Dask scheduler at '{address}' within 5 s"
        ):
            workflow.init(storage=store_path + ".other", executor=address)
        assert workflow.get_runtime() is rt
        assert not rt.closed
    finally:
        workflow.shutdown()


def test_address_that_accepts_but_never_answers_times_out_naming_it() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(
            ClusterConnectionError,
            match=rf"^Cannot connect to the Dask scheduler at '{address}' within 0.5 s",
        ):
            DaskExecutor(address, connect_timeout_seconds=0.5)
