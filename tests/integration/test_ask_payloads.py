"""What the store shows of a ``workflow.ask`` answer: JSON with who answered and when, in
``inbox_events`` and in the checkpoint of a ``wait_for_any`` whose winning branch is an ask."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

import evkit
from evkit import workflow


@dataclasses.dataclass
class Approval:
    approve: bool
    note: str = ""


# Defined at import, off the event loop: `workflow.ask` builds the model's validator
# (pydantic's first one in a process reads files).
SHIP = workflow.ask(Approval, prompt="Ship it?", name="ship")
SHIP_OR_LATER = workflow.wait_for_any({"ship": SHIP, "later": workflow.sleep(3600)})


@pytest.fixture(autouse=True)
def notebook_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Who answers from the notebook, as JupyterHub would say: the same on every machine."""
    monkeypatch.setenv("JUPYTERHUB_USER", "dana")


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def send(workflow_id: str, key: str, payload: object) -> str:
    return await asyncio.to_thread(workflow.send_event, workflow_id, key, payload)


async def test_inbox_events_shows_an_answer_as_json_with_who_sent_it(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(SHIP, workflow_id="i1")
    await handle.wait_waiting(timeout_seconds=5)
    await send("i1", "ship", {"approve": True, "note": "ok"})
    assert await handle == Approval(approve=True, note="ok")
    [(payload, source)] = await rows("SELECT payload, source FROM inbox_events WHERE workflow_id = 'i1'")
    sent = json.loads(str(payload))
    assert sent["answer"] == {"approve": True, "note": "ok"}
    assert sent["answered_by"] == "notebook:dana" == source
    assert sent["answered_at"].endswith("+00:00")


async def test_an_ask_that_wins_a_wait_for_any_records_who_answered(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(SHIP_OR_LATER, workflow_id="a1")
    await handle.wait_waiting(timeout_seconds=5)
    await send("a1", "ship", {"approve": False})
    assert await handle == ("ship", Approval(approve=False))
    [(payload,)] = await rows(
        "SELECT payload FROM events WHERE workflow_id = 'a1' AND listener LIKE 'any of: %'"
    )
    name, checkpoint = json.loads(str(payload))
    assert name == "ship"
    assert checkpoint["answer"] == {"approve": False, "note": ""}
    assert checkpoint["answered_by"] == "notebook:dana"
    assert checkpoint["answered_at"].endswith("+00:00")
    [(winner,)] = await rows(
        "SELECT payload ->> '$[1].answered_by' FROM events "
        "WHERE workflow_id = 'a1' AND listener LIKE 'any of: %'"
    )
    assert winner == "notebook:dana"
