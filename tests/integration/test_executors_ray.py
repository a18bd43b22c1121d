"""Step bodies on a real local Ray instance (two CPUs) while the waits and the checkpoints
stay on the test's loop: fan-out, a killed worker, cancellation, bad input."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
from _cluster_steps import (
    RecordingListener,
    block,
    check_a_dying_worker_is_retried,
    fan_out_with_a_wait,
    make_lock,
    pid,
    pid_gone,
    rows,
    step_log,
    until,
    wait_for_started,
)
from blockbuster import BlockBuster, blockbuster_ctx

import evkit
from evkit import workflow
from evkit.executors import ClusterConnectionError, RayExecutor, StepTransportError
from evkit.executors.ray import ray_task_options

ray = pytest.importorskip("ray")

# Starting Ray takes 9-25 s on a busy 2-core machine; the first test pays for it.
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Like the directory's fixture, but only calls made from evkit or these tests count
    (Ray's own threads are not the engine's loop)."""
    with blockbuster_ctx(["evkit", "_cluster_steps", __name__]) as bb:
        yield bb


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray for the module (starting one takes seconds): two CPUs, and a custom
    resource `slots` to check that step resources reach Ray."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, resources={"slots": 2})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
async def ray_runtime(store_path: str, ray_instance: None) -> AsyncIterator[evkit.Runtime]:
    """Engine on the test's loop, steps on Ray (the instance the fixture started)."""
    rt = await asyncio.to_thread(workflow.init, storage=store_path, executor="ray")
    yield rt
    await rt.aclose()
    assert ray.is_initialized()  # the executor did not start Ray, so it leaves it running


async def test_fan_out_of_100_steps_runs_on_ray_workers_while_the_wait_stays_on_the_loop(
    ray_runtime: evkit.Runtime,
) -> None:
    RecordingListener.seen = []
    handle = workflow.run_async(fan_out_with_a_wait(100), workflow_id="fan")
    await until(lambda: handle.status is workflow.WAITING, timeout_seconds=60)
    assert RecordingListener.seen == [(os.getpid(), threading.get_ident())]
    await asyncio.to_thread(workflow.send_event, "fan", "bonus", 7)
    result = await handle
    assert isinstance(result, dict)
    assert result["sum"] == sum(i * i for i in range(100)) + 7
    assert os.getpid() not in result["pids"]
    assert await rows("SELECT count(*), max(attempts), min(state) FROM steps WHERE name = 'square'") == [
        (100, 1, "succeeded")
    ]
    assert await rows("SELECT state FROM events WHERE workflow_id = 'fan'") == [("committed",)]


async def test_step_returning_a_value_that_cannot_travel_fails_naming_the_step_and_type(
    ray_runtime: evkit.Runtime,
) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await make_lock.step().run_async(workflow_id="lock")
    cause = info.value.__cause__
    assert isinstance(cause, StepTransportError)
    assert str(cause).startswith(
        "Step 'make_lock' of run 'lock' ran on the ray cluster, but its result, a _thread.lock, "
        "cannot be pickled to travel back (TypeError: cannot pickle '_thread.lock' object)."
    )


async def test_per_step_executor_and_resources_reach_the_ray_task(
    store_path: str, ray_instance: None
) -> None:
    def assigned() -> dict[str, float]:
        return dict(ray.get_runtime_context().get_assigned_resources())

    on_ray = workflow.step(executor="ray", resources={"CPU": 0.5, "slots": 1})(assigned)
    rt = await asyncio.to_thread(workflow.init, storage=store_path, executors={"ray": "ray"})
    try:
        assert await on_ray.step().run_async(workflow_id="res") == {"CPU": 0.5, "slots": 1.0}
        assert await pid.step().run_async(workflow_id="local") == os.getpid()
    finally:
        await rt.aclose()


async def test_step_whose_ray_worker_dies_is_retried_and_the_store_shows_each_attempt(
    ray_runtime: evkit.Runtime, tmp_path: os.PathLike[str]
) -> None:
    await check_a_dying_worker_is_retried(
        tmp_path, "WorkerLostError: Step 'die_once' of run 'kill': the Ray worker running it died"
    )


async def test_cancelling_a_run_force_cancels_its_ray_task_so_the_body_never_finishes(
    ray_runtime: evkit.Runtime, tmp_path: os.PathLike[str]
) -> None:
    started, release, done = (os.path.join(os.fspath(tmp_path), n) for n in ("started", "release", "done"))
    handle = workflow.run_async(block.step(started, release, done), workflow_id="cancel")
    body_pid = await wait_for_started(started)
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert workflow.get_status("cancel") is workflow.CANCELED
    assert [state for state, _, _ in await step_log("cancel", "block")] == ["running", "cancelled"]
    await until(lambda: pid_gone(body_pid), off_loop=True)
    assert not await asyncio.to_thread(os.path.exists, done)


def test_step_resources_map_to_ray_task_options() -> None:
    assert ray_task_options({"CPU": 2, "GPU": 1, "memory": 1e9, "slots": 3}) == {
        "max_retries": 0,
        "retry_exceptions": False,
        "num_cpus": 2.0,
        "num_gpus": 1.0,
        "memory": 1_000_000_000,
        "resources": {"slots": 3.0},
    }


def test_unreachable_ray_address_fails_at_init_naming_it(store_path: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"ray://127.0.0.1:{port}"  # nothing listens there any more
    with pytest.raises(
        ClusterConnectionError, match=rf"^Cannot reach the Ray cluster at '{address}' within 5 s"
    ):
        workflow.init(storage=store_path, executor=address)
    with pytest.raises(
        ClusterConnectionError, match=rf"^Cannot reach the Ray cluster at '{address}' within 0.2 s"
    ):
        RayExecutor(address, connect_timeout_seconds=0.2)
