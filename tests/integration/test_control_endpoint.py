"""The store owner's control endpoint, seen by a client: secrets, the owner file, forwarding.

The owner is a runtime of this process on its own loop thread; the client talks to it
over real HTTP on 127.0.0.1, as one in another process does (those are in
test_owner_processes.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import os
import stat
from collections.abc import Iterator
from urllib.parse import urlsplit

import pydantic
import pytest

import evkit
from evkit import workflow
from evkit.client import ClientRuntime
from evkit.dag import flatten
from evkit.owner_file import owner_file_path, read_owner_file

pytestmark = pytest.mark.slow


@workflow.step
def shout(event: object) -> str:
    return f"{event}!"


@pytest.fixture
def owner(tmp_path: os.PathLike[str]) -> Iterator[evkit.Runtime]:
    """An owner with one run 'w' waiting on key 'go' (its engine on a loop thread, as a
    script's would be, so this test's thread can block on HTTP calls to it)."""
    runtime = evkit.Runtime(os.path.join(tmp_path, "store.duckdb"), loop="thread")
    runtime.engine()
    asyncio.run(runtime.serving_async())  # the endpoint starts in the background
    try:
        yield runtime
    finally:
        runtime.close()


def _raw(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("POST", path, body=b"{}", headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_owner_file_is_private_and_goes_with_the_runtime(owner: evkit.Runtime) -> None:
    path = owner_file_path(owner.storage)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    info = read_owner_file(owner.storage)
    assert info is not None
    assert (info.pid, info.url, info.storage) == (os.getpid(), owner.owner_url, owner.storage)
    owner.close()
    assert not os.path.exists(path)


def test_requests_without_the_right_secret_are_refused_and_logged(
    owner: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    url = owner.owner_url
    assert url is not None
    with caplog.at_level(logging.WARNING, logger="evkit"):
        status, body = _raw(url, "/v1/sql", {})
        assert (status, body["error"]) == (401, "unauthorized")
        status, body = _raw(url, "/v1/sql", {"Authorization": "Bearer not-the-secret"})
        assert (status, body["error"]) == (403, "forbidden")
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2
    assert refusals[0].endswith(": no secret")
    assert refusals[1].endswith(": wrong secret")
    assert "not-the-secret" not in caplog.text


def test_a_client_forwards_queries_sends_and_refuses_writing_sql(owner: evkit.Runtime) -> None:
    node = shout.step(workflow.wait_for_event(workflow.ManualListener, key="go"))
    active = owner.call_soon(lambda engine: engine.start("w", flatten(node)))
    info = read_owner_file(owner.storage)
    assert info is not None
    client = ClientRuntime(owner.storage, info)
    try:
        handle = client.handle("w")
        assert handle.status is not None
        rows = client.sql("SELECT workflow_id FROM workflows").fetchall()
        assert rows == [("w",)]
        assert list(client.sql("SELECT 1 AS one, 'a' AS letter").df().columns) == ["one", "letter"]
        for query in ("DROP VIEW workflows", "SELECT 1; DELETE FROM inbox", "INSERT INTO inbox VALUES (1)"):
            with pytest.raises(evkit.ReadOnlyQueryError, match=r"^SQL through the store's owner only reads"):
                client.sql(query)
        assert client.sql("SELECT count(*) FROM workflows").fetchall() == [(1,)]  # views intact
        with pytest.raises(evkit.WorkflowNotFoundError, match=r"^Run 'nope' is not in store"):
            client.call("get_status", workflow_id="nope")
        client.call("send_event", workflow_id="w", key="go", payload="hi", event_id="e1")
        assert handle.result(timeout=30) == "hi!"
        assert active.task.done()
        assert client.call("list_all") == [("w", "SUCCESSFUL")]
        refusal = client.refusal("resume", "w")
        assert isinstance(refusal, evkit.StoreOwnedElsewhereError)
        assert (refusal.pid, refusal.host) == (info.pid, info.host)
    finally:
        client.close()


def test_a_client_of_a_closed_owner_says_the_owner_is_unreachable(owner: evkit.Runtime) -> None:
    info = read_owner_file(owner.storage)
    assert info is not None
    client = ClientRuntime(owner.storage, info)
    try:
        assert client.call("list_all") == []
        owner.close()
        with pytest.raises(
            evkit.OwnerUnreachableError, match=r"^The owner of store .* \(process \d+ on host"
        ):
            client.call("list_all")
    finally:
        client.close()


@dataclasses.dataclass
class Refund:
    approve: bool
    amount: float


def test_a_clients_answer_to_a_question_is_checked_by_the_owner(owner: evkit.Runtime) -> None:
    # pydantic scans its plugins' entry points (os.stat of sys.path) the first time a
    # process builds a validator: done here, off the owner's loop, which blockbuster watches.
    pydantic.TypeAdapter(Refund)
    node = shout.step(workflow.ask(Refund, prompt="Refund?", key="refund"))
    active = owner.call_soon(lambda engine: engine.start("q", flatten(node)))
    info = read_owner_file(owner.storage)
    assert info is not None
    client = ClientRuntime(owner.storage, info)
    try:
        handle = client.handle("q")
        while handle.status is not workflow.WAITING:
            client.changes("q", after=-1, wait=0.5)  # the ask opens its question
        with pytest.raises(evkit.AnswerError, match=r"^send_event\('q', 'refund', \.\.\.\): the answer"):
            client.call(
                "send_event",
                workflow_id="q",
                key="refund",
                payload={"approve": "?"},
                event_id="a1",
                answered_by="notebook:client-user",
            )
        assert client.sql("SELECT count(*) FROM inbox_events").fetchall() == [(0,)]
        client.call(
            "send_event",
            workflow_id="q",
            key="refund",
            payload={"approve": True, "amount": 3},
            event_id="a2",
            answered_by="notebook:client-user",
        )
        assert handle.result(timeout=30) == "Refund(approve=True, amount=3.0)!"
        assert active.task.done()
        assert client.sql("SELECT source FROM inbox_events").fetchall() == [("notebook:client-user",)]
    finally:
        client.close()
