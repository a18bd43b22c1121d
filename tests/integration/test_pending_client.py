"""``workflow.pending()`` in a client of the store's owner: a real owner process runs an
ask step; this process, its client, lists the open question as text (read through the
owner's SQL), answers it with ``send_event``, and then sees none."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

_CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

_OWNER = """
import asyncio, dataclasses, sys
from evkit import workflow

@dataclasses.dataclass
class Refund:
    approve: bool
    amount: float

workflow.init(storage=sys.argv[1], loop="thread")
handle = workflow.run_async(workflow.ask(Refund, prompt="Approve the refund?"), workflow_id="r1")
asyncio.run(handle.wait_waiting(timeout_seconds=30))
asyncio.run(workflow.get_runtime().serving_async())
print("READY", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def store(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A store owned by another process whose run 'r1' waits on an ask step."""
    path = os.path.join(tmp_path, "store.duckdb")
    owner = subprocess.Popen(
        [sys.executable, "-u", "-c", _OWNER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV,
    )
    try:
        assert owner.stdout is not None
        while (line := owner.stdout.readline()) != "READY\n":
            assert line, "the owner ended before it was READY"
        yield path
    finally:
        workflow.shutdown()
        assert owner.stdin is not None
        owner.stdin.close()  # the owner's script ends at EOF
        owner.wait(timeout=60)


def test_a_client_lists_the_owners_open_questions_and_answers_one(store: str) -> None:
    client = workflow.init(storage=store)
    assert isinstance(client, evkit.ClientRuntime)
    pending = workflow.pending()
    assert len(pending) == 0  # no forms here: nothing this process executes
    assert [(q.workflow_id, q.step_id, q.key, q.prompt, q.model) for q in pending.elsewhere] == [
        ("r1", "ask", "approve-the-refund", "Approve the refund?", "Refund")
    ]
    text = repr(pending)
    assert text.startswith(f"1 open question in store {store!r}, owned by process ")
    assert "\n- run 'r1', step 'ask', waiting since " in text
    assert "\n    Approve the refund?\n" in text
    assert text.endswith("answer: workflow.send_event('r1', 'approve-the-refund', {...})  # a Refund")
    assert pending._repr_mimebundle_() == {"text/plain": text}

    with pytest.raises(evkit.AnswerError, match=r"`amount`"):
        workflow.send_event("r1", "approve-the-refund", {"approve": True, "amount": "lots"})
    workflow.send_event("r1", "approve-the-refund", {"approve": True, "amount": 3})
    assert workflow.get_output("r1") is not None  # waits for the run to end
    assert (
        repr(workflow.pending())
        == f"No open questions (store {store!r}, owned by {client.owner.describe()})."
    )
