"""A real ipykernel: a blocking run() in a cell keeps the kernel answering.

The original nest_asyncio loses shell messages that arrive during a nested run with
ipykernel 7 (cells stuck at [*]); evkit's nested runs use nest-asyncio2, which defers
them. This test sends what JupyterLab sends on "Run All" while a cell blocks in run().
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]


@pytest.fixture
def kernel(tmp_path: os.PathLike[str]) -> Iterator[BlockingKernelClient]:
    """A fresh python3 kernel (this interpreter) working in the test's temporary folder."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=os.fspath(tmp_path))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def replies_to(
    client: BlockingKernelClient, msg_ids: set[str], timeout_seconds: float
) -> dict[str, dict[str, object]]:
    replies: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + timeout_seconds
    while msg_ids - replies.keys() and time.monotonic() < deadline:
        try:
            message = client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:  # queue.Empty: nothing more came in time
            break
        parent = message["parent_header"].get("msg_id")
        if parent in msg_ids:
            replies[parent] = message
    return replies


def test_blocking_run_in_a_cell_loses_no_kernel_messages(kernel: BlockingKernelClient) -> None:
    setup = kernel.execute(
        "from evkit import workflow\nworkflow.init(storage='store.duckdb')\n", store_history=False
    )
    assert replies_to(kernel, {setup}, 60)[setup]["content"]["status"] == "ok"  # type: ignore[index]
    blocking = kernel.execute("result = workflow.run(workflow.sleep(1.5), workflow_id='nap')\n")
    # While that cell blocks in a nested run: another cell, kernel_info and completion.
    queued = {
        kernel.execute("after = workflow.get_status('nap').value\n"),
        kernel.kernel_info(),
        kernel.complete("workflow.ru", 11),
    }
    replies = replies_to(kernel, {blocking} | queued, 60)
    assert set(replies) == {blocking} | queued, "some shell requests never got a reply"
    for reply in replies.values():
        assert reply["content"]["status"] == "ok", reply["content"]  # type: ignore[index]
    check = kernel.execute("", user_expressions={"after": "after", "result": "result"})
    expressions = replies_to(kernel, {check}, 30)[check]["content"]["user_expressions"]  # type: ignore[index]
    assert expressions["after"]["data"]["text/plain"] == "'SUCCESSFUL'"
    assert expressions["result"]["data"]["text/plain"] == "None"


def test_run_async_returns_at_once_and_the_wait_goes_on_between_cells(kernel: BlockingKernelClient) -> None:
    start = kernel.execute(
        "from evkit import workflow\nworkflow.init(storage='store.duckdb')\n"
        "node = workflow.wait_for_event(workflow.ManualListener, key='go')\n"
        "handle = workflow.run_async(node, workflow_id='w')\n"
        "started = handle.status.value\n"
    )
    assert replies_to(kernel, {start}, 60)[start]["content"]["status"] == "ok"  # type: ignore[index]
    send = kernel.execute("workflow.send_event('w', 'go', 'approved')\nresult = await handle\n")
    assert replies_to(kernel, {send}, 60)[send]["content"]["status"] == "ok"  # type: ignore[index]
    check = kernel.execute("", user_expressions={"started": "started", "result": "result"})
    expressions = replies_to(kernel, {check}, 30)[check]["content"]["user_expressions"]  # type: ignore[index]
    assert expressions["started"]["data"]["text/plain"] in ("'RUNNING'", "'WAITING'")
    assert expressions["result"]["data"]["text/plain"] == "'approved'"
