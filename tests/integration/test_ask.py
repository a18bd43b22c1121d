"""workflow.ask on a real loop and store: answers validated before anything is stored
(send_event raises AnswerError; the HTTP inbox answers 400 over a real socket), the
answer as an instance of the model, who answered and when in the checkpoint,
workflow.pending(), answers sent early, timeouts, and the widget's submit path."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import pydantic
import pytest

import evkit
from evkit import workflow
from evkit.notebook.forms import PendingWidget, submit_answer
from evkit.serve import serve_events_async


@dataclasses.dataclass
class Refund:
    approve: bool
    amount: float
    channel: Literal["card", "voucher"] = "card"


class Shipment(pydantic.BaseModel):
    carrier: Literal["ups", "dhl"]
    boxes: int = pydantic.Field(gt=0, description="How many boxes")


@workflow.step
def decide(refund: object) -> object:
    return refund


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client; closed at teardown so no connection outlives the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(autouse=True)
def notebook_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Who answers from the notebook, as JupyterHub would say: the same on every machine."""
    monkeypatch.setenv("JUPYTERHUB_USER", "dana")


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def send(workflow_id: str, key: str, payload: object) -> str:
    return await asyncio.to_thread(workflow.send_event, workflow_id, key, payload)


async def test_valid_answer_is_an_instance_and_its_checkpoint_says_who_answered(
    aruntime: evkit.Runtime,
) -> None:
    handle = workflow.run_async(
        decide.step(workflow.ask(Refund, prompt="Approve the refund?")), workflow_id="r1"
    )
    await handle.wait_waiting(timeout_seconds=5)
    await send("r1", "approve-the-refund", {"approve": True, "amount": 12})
    assert await handle == Refund(approve=True, amount=12.0)
    [(payload,)] = await rows("SELECT payload FROM events WHERE workflow_id = 'r1'")
    checkpoint = json.loads(str(payload))
    assert checkpoint["answer"] == {"approve": True, "amount": 12.0, "channel": "card"}
    assert checkpoint["answered_by"] == "notebook:dana"
    assert checkpoint["answered_at"].endswith("+00:00")
    assert await rows("SELECT source, delivered_to FROM inbox_events") == [("notebook:dana", "ask")]


async def test_invalid_answer_raises_naming_field_run_and_key_and_stores_nothing(
    aruntime: evkit.Runtime,
) -> None:
    handle = workflow.run_async(
        decide.step(workflow.ask(Refund, prompt="Approve the refund?")), workflow_id="r2"
    )
    await handle.wait_waiting(timeout_seconds=5)
    with pytest.raises(evkit.AnswerError) as caught:
        await send("r2", "approve-the-refund", {"approve": True, "amount": "lots"})
    assert str(caught.value).startswith(
        "send_event('r2', 'approve-the-refund', ...): the answer to 'Approve the refund?' (step 'ask' of run "
        "'r2', key 'approve-the-refund') does not fit Refund: `amount`: Input should be a valid number"
    )
    assert str(caught.value).endswith(
        "Expected fields: approve (checkbox, required), amount (number, required), channel (select). "
        "Nothing was stored; send a corrected answer."
    )
    assert (caught.value.workflow_id, caught.value.key) == ("r2", "approve-the-refund")
    assert [field for field, _ in caught.value.errors] == ["amount"]
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]
    assert handle.status is workflow.WAITING
    await send("r2", "approve-the-refund", {"approve": False, "amount": 0})
    assert await handle == Refund(approve=False, amount=0.0)


async def test_pending_lists_open_questions_across_runs_and_drops_answered_ones(
    aruntime: evkit.Runtime,
) -> None:
    first = workflow.run_async(
        decide.step(workflow.ask(Refund, prompt="Approve the refund?")), workflow_id="p1"
    )
    second = workflow.run_async(workflow.ask(Shipment, prompt="Ship how?", name="ship"), workflow_id="p2")
    await first.wait_waiting(timeout_seconds=5)
    await second.wait_waiting(timeout_seconds=5)
    pending = await asyncio.to_thread(workflow.pending)
    assert [(q.workflow_id, q.step_id, q.key) for q in pending] == [
        ("p1", "ask", "approve-the-refund"),
        ("p2", "ship", "ship"),
    ]
    text = repr(pending)
    assert text.startswith("2 open questions:\n- run 'p1', step 'ask', waiting since ")
    assert "    Ship how?\n" in text
    assert text.endswith(
        """answer: workflow.send_event('p2', 'ship', {"carrier": "ups"|"dhl", "boxes": <int>})"""
    )
    await send("p2", "ship", {"carrier": "dhl", "boxes": 2})
    assert await second == Shipment(carrier="dhl", boxes=2)
    assert [q.workflow_id for q in await asyncio.to_thread(workflow.pending)] == ["p1"]
    await send("p1", "approve-the-refund", {"approve": True, "amount": 1})
    await first
    assert repr(await asyncio.to_thread(workflow.pending)) == "No open questions."


async def test_invalid_answer_sent_before_the_question_opens_is_skipped(
    aruntime: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    gate = workflow.wait_for_event(workflow.ManualListener, key="gate")
    handle = workflow.run_async(decide.step(ask_after.step(gate)), workflow_id="early")
    await handle.wait_waiting(timeout_seconds=5)
    # No question is open yet: both are stored as sent, and checked when the step takes them.
    await send("early", "refund", {"approve": "yes"})
    await send("early", "refund", {"approve": True, "amount": 5})
    await send("early", "gate", None)
    assert await handle == Refund(approve=True, amount=5.0)
    assert "skipped an answer sent to key 'refund' before the question was open" in caplog.text


@workflow.step
def ask_after(_: object) -> evkit.StepNode:
    return workflow.ask(Refund, key="refund")


async def test_unanswered_question_times_out_to_its_default(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    question = workflow.ask(Refund, prompt="Refund?", timeout_seconds=60, default=None)
    handle = workflow.run_async(decide.step(question), workflow_id="late")
    await handle.wait_waiting(timeout_seconds=5)
    fake_clock.advance(61)
    assert await handle is None
    assert repr(await asyncio.to_thread(workflow.pending)) == "No open questions."


def test_ask_refuses_what_is_not_a_model() -> None:
    with pytest.raises(
        evkit.WorkflowDefinitionError, match=r"^workflow\.ask\(\): The model of a question must be"
    ):
        workflow.ask(dict, prompt="Refund?")


def test_default_key_comes_from_name_else_prompt_else_model() -> None:
    def key_of(node: evkit.StepNode) -> object:
        return node.args[0]

    assert (
        key_of(workflow.ask(Refund, prompt="Approve the refund of order #12?"))
        == "approve-the-refund-of-order-12"
    )
    assert key_of(workflow.ask(Refund, prompt="Approve?", name="refund_ok")) == "refund-ok"
    assert key_of(workflow.ask(Refund)) == "refund"
    assert key_of(workflow.ask(Refund, key="mine")) == "mine"


@pytest.mark.slow
async def test_http_answer_is_validated_with_field_errors_as_json(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(workflow.ask(Shipment, prompt="Ship how?", key="ship"), workflow_id="h1")
    server = await serve_events_async()
    await handle.wait_waiting(timeout_seconds=5)
    url = server.event_url("h1", "ship")
    async with session.post(url, json={"carrier": "fedex", "boxes": 0}) as reply:
        assert reply.status == 400
        body = await reply.json()
    assert body["error"] == "invalid_answer"
    assert body["fields"] == [
        {"field": "carrier", "message": "Input should be 'ups' or 'dhl'"},
        {"field": "boxes", "message": "Input should be greater than 0"},
    ]
    assert body["message"].startswith(
        "POST /events/h1/ship: the answer to 'Ship how?' (step 'ask' of run 'h1'"
    )
    assert body["schema"]["properties"]["boxes"]["description"] == "How many boxes"
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]
    async with session.post(url, json={"carrier": "ups", "boxes": 3}) as reply:
        assert reply.status == 202
    assert await handle == Shipment(carrier="ups", boxes=3)
    [(payload,)] = await rows("SELECT payload FROM events WHERE workflow_id = 'h1'")
    assert json.loads(str(payload))["answered_by"] == "http"


@pytest.mark.slow
async def test_http_answer_records_the_verified_sender(
    store_path: str, fake_clock: evkit.FakeClock, session: aiohttp.ClientSession
) -> None:
    runtime = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    try:
        rule = workflow.HMACSignature(secret="s3cret", header="X-Signature", name="shop")
        server = await serve_events_async(verify={"ship": rule})
        handle = workflow.run_async(workflow.ask(Shipment, key="ship"), workflow_id="h2")
        await handle.wait_waiting(timeout_seconds=5)
        body = json.dumps({"carrier": "dhl", "boxes": 1}).encode()
        signature = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Signature": signature}
        async with session.post(server.event_url("h2", "ship"), data=body, headers=headers) as reply:
            assert reply.status == 202
        await handle
        [(payload,)] = await rows("SELECT payload FROM events WHERE workflow_id = 'h2'")
        assert json.loads(str(payload))["answered_by"] == "http:shop"
    finally:
        await runtime.aclose()


async def test_widget_submit_shows_field_errors_then_sends_a_valid_answer(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.ask(Shipment, prompt="Ship how?"), workflow_id="w1")
    await handle.wait_waiting(timeout_seconds=5)
    widget = PendingWidget()
    await submit_answer(aruntime, widget, "w1", "ask", {"carrier": "ups", "boxes": -1})
    assert widget.answer_status["w1/ask"] == {
        "ok": False,
        "text": "Not sent: fix the fields marked.",
        "errors": [["boxes", "Input should be greater than 0"]],
        "seq": 1,
    }
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]
    await submit_answer(aruntime, widget, "w1", "ask", {"carrier": "ups", "boxes": 4})
    assert widget.answer_status["w1/ask"]["ok"] is True
    assert await handle == Shipment(carrier="ups", boxes=4)
    assert await rows("SELECT event_id, source FROM inbox_events") == [("widget:ask:1", "notebook:dana")]


@pytest.mark.slow
async def test_question_is_asked_again_after_a_restart_and_still_validates(
    store_path: str, fake_clock: evkit.FakeClock
) -> None:
    runtime = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    handle = workflow.run_async(decide.step(workflow.ask(Refund, prompt="Refund?")), workflow_id="again")
    await handle.wait_waiting(timeout_seconds=5)
    await runtime.aclose()  # the kernel restarts: the run is left waiting in the store
    runtime = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    try:
        runtime.engine()  # on this loop, as a notebook cell's first call would make it
        # Not executing here yet: listed from the store, without a form.
        before = await asyncio.to_thread(workflow.pending)
        assert list(before) == []
        assert [(q.workflow_id, q.step_id, q.key, q.prompt, q.model) for q in before.elsewhere] == [
            ("again", "ask", "refund", "Refund?", "Refund")
        ]
        assert repr(before).startswith(
            "0 open questions:\n1 more in runs this process does not execute (resume a run to answer it here "
            "with a form; an answer sent now is checked when the resumed step takes it):\n"
            "- run 'again', step 'ask', key 'refund', waiting since "
        )
        resumed = workflow.resume_async("again")
        await resumed.wait_waiting(timeout_seconds=5)
        after = await asyncio.to_thread(workflow.pending)
        [question] = after
        assert (question.step_id, question.key, question.attempt) == ("ask", "refund", 2)
        assert after.elsewhere == ()
        with pytest.raises(evkit.AnswerError):
            await send("again", "refund", {"approve": True})
        await send("again", "refund", {"approve": True, "amount": 7})
        assert await resumed == Refund(approve=True, amount=7.0)
    finally:
        await runtime.aclose()
