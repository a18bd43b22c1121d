"""The HTTP inbox on a real loopback socket with a real client (aiohttp): delivery to
HTTPListener waits, durable-before-reply, idempotent retries, JSON errors for bad input,
tokens, and the server's life cycle with the runtime."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest

import evkit
from evkit import workflow
from evkit.listeners.http import EventServer
from evkit.serve import serve_events_async


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client; closed at teardown so no connection outlives the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


def http_wait(key: str, **options: object) -> evkit.StepNode:
    return workflow.wait_for_event(workflow.HTTPListener, key=key, **options)


async def post(
    session: aiohttp.ClientSession, url: str, body: object = None, *, raw: bytes | None = None, **headers: str
) -> tuple[int, dict[str, object]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with session.post(url, data=data, headers={"Content-Type": "application/json", **headers}) as reply:
        return reply.status, await reply.json()


async def test_posted_event_is_delivered_to_the_waiting_step(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(collect.step(http_wait("approval")), workflow_id="w")
    server = await serve_events_async()
    status, reply = await post(session, server.event_url("w", "approval"), {"approved": True})
    assert status == 202
    assert reply == {"workflow_id": "w", "key": "approval", "event_id": reply["event_id"], "duplicate": False}
    assert await handle == ({"approved": True},)
    assert await rows("SELECT key, payload, source, delivered_to FROM inbox_events") == [
        ("approval", '{"approved": true}', "http", "HTTPListener")
    ]


async def test_event_posted_before_the_wait_starts_is_kept_and_delivered_when_it_does(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    # The HTTP wait starts only after a manual event: the POST arrives first.
    gate = workflow.wait_for_event(workflow.ManualListener, key="gate")
    handle = workflow.run_async(collect.step(gate, after_gate.step(gate)), workflow_id="early")
    server = await serve_events_async()
    status, _ = await post(session, server.event_url("early", "late-key"), [1, 2, 3])
    assert status == 202
    assert await rows("SELECT delivered_to FROM inbox_events") == [(None,)]
    await aruntime.engine().inbox.send("early", "gate", "open")
    assert await handle == ("open", [1, 2, 3])


@workflow.step
def after_gate(_: object) -> evkit.StepNode:
    return http_wait("late-key")


@pytest.mark.allow_blocking
async def test_success_reply_comes_only_after_the_event_is_durable(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="durable")
    server = await serve_events_async()
    for i in range(5):
        status, _ = await post(
            session, server.event_url("durable", f"key-{i}"), i, **{"Idempotency-Key": f"id-{i}"}
        )
        assert status == 202
        # Read at once, blocking this loop (the engine's): no write can start meanwhile, so
        # the row is there only if it was committed before the reply. Another cursor sees
        # committed transactions only.
        stored = evkit.sql("SELECT count(*) FROM inbox_events WHERE event_id = ?", [f"id-{i}"]).fetchall()
        assert stored == [(1,)], f"event {i} replied 202 before it was durable"


async def test_retry_with_the_same_idempotency_key_is_stored_and_delivered_once(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(
        collect.step(http_wait("k"), http_wait("k", timeout_seconds=30, default="no second event")),
        workflow_id="retry",
    )
    server = await serve_events_async()
    url = server.event_url("retry", "k")
    first = await post(session, url, {"n": 1}, **{"Idempotency-Key": "order-17"})
    again = await post(session, url, {"n": 1}, **{"Idempotency-Key": "order-17"})
    assert first == (202, {"workflow_id": "retry", "key": "k", "event_id": "order-17", "duplicate": False})
    assert again == (202, {"workflow_id": "retry", "key": "k", "event_id": "order-17", "duplicate": True})
    clock = aruntime.clock
    assert isinstance(clock, evkit.FakeClock)
    await clock.wait_for_sleepers_async(1)
    clock.advance(30)
    assert await handle == ({"n": 1}, "no second event")
    assert await rows("SELECT count(*) FROM inbox_events WHERE workflow_id = 'retry'") == [(1,)]


async def test_idempotency_key_reused_for_another_key_of_the_run_is_refused(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("a"), workflow_id="reuse")
    server = await serve_events_async()
    assert (await post(session, server.event_url("reuse", "a"), 1, **{"Idempotency-Key": "x"}))[0] == 202
    status, reply = await post(session, server.event_url("reuse", "b"), 2, **{"Idempotency-Key": "x"})
    assert status == 409
    assert reply["error"] == "idempotency_key_conflict"
    assert await rows("SELECT key FROM inbox_events WHERE workflow_id = 'reuse'") == [("a",)]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error", "message"),
    [
        ("POST", "/events/bad/k", b"{not json", {}, 400, "malformed_json", r"^The body is not valid JSON: "),
        ("POST", "/events/bad/k", b"", {}, 400, "malformed_json", r"^The body is empty"),
        ("POST", "/events/bad/k", b"NaN", {}, 400, "malformed_json", r"NaN is not valid JSON"),
        (
            "POST",
            "/events/bad/k",
            b"x" * 2048,
            {},
            413,
            "body_too_large",
            r"^The body is 2048 bytes; .* at most 1024 bytes",
        ),
        (
            "POST",
            "/events/nobody/k",
            b"1",
            {},
            404,
            "unknown_workflow",
            r"^Run 'nobody' is not in this store",
        ),
        (
            "POST",
            "/nowhere",
            b"1",
            {},
            404,
            "not_found",
            r"^No route for POST /nowhere\. Send events with POST",
        ),
        (
            "GET",
            "/events/bad/k",
            None,
            {},
            405,
            "method_not_allowed",
            r"^GET is not allowed on /events/bad/k",
        ),
        (
            "POST",
            "/events/bad/k",
            b"1",
            {"Idempotency-Key": "has space"},
            400,
            "invalid_idempotency_key",
            r"must be 1 to 200",
        ),
    ],
)
async def test_bad_request_gets_a_json_error_saying_what_was_wrong_and_nothing_is_stored(
    aruntime: evkit.Runtime,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    error: str,
    message: str,
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="bad")
    server = await serve_events_async(max_body_bytes=1024)
    async with session.request(method, server.url + path, data=body, headers=headers) as reply:
        assert reply.status == status
        assert reply.content_type == "application/json"
        payload = await reply.json()
    assert payload["error"] == error
    assert re.search(message, payload["message"]), payload["message"]
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_chunked_body_over_the_limit_gets_413(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="chunked")
    server = await serve_events_async(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * 512

    async with session.post(server.event_url("chunked", "k"), data=chunks()) as reply:
        assert reply.status == 413
        assert (await reply.json())["error"] == "body_too_large"
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_with_a_token_every_request_must_carry_it(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("k"), workflow_id="tok")
    server = await serve_events_async(token="s3cret-token")
    url = server.event_url("tok", "k")
    missing = await post(session, url, 1)
    wrong = await post(session, url, 1, Authorization="Bearer nope")
    basic = await post(session, url, 1, Authorization="Basic czNjcmV0")
    no_route = await post(session, server.url + "/elsewhere", 1)
    assert (missing[0], missing[1]["error"]) == (401, "missing_token")
    assert (wrong[0], wrong[1]["error"]) == (403, "wrong_token")
    assert (basic[0], basic[1]["error"]) == (401, "missing_token")
    assert no_route[0] == 401  # routes are not revealed without the token
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]
    assert (await post(session, url, 1, Authorization="Bearer s3cret-token"))[0] == 202
    assert await handle == 1


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_binding_beyond_loopback_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^Binding the event server to '{re.escape(host)}' .* needs a `token=`"
    ):
        workflow.serve_events(host)


def test_bad_server_options_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match=r"^`port` must be an int from 0 to 65535"):
        workflow.serve_events(port=70000)
    with pytest.raises(ValueError, match=r"^`max_body_bytes` must be a positive int, got 0"):
        workflow.serve_events(max_body_bytes=0)


async def test_first_http_wait_starts_the_server_and_closing_the_runtime_stops_it(
    store_path: str, session: aiohttp.ClientSession
) -> None:
    runtime = await asyncio.to_thread(workflow.init, storage=store_path)
    handle = workflow.run_async(http_wait("k"), workflow_id="lazy")
    await _until(lambda: runtime.engine().services.get(EventServer) is not None)
    started_by_the_wait = runtime.engine().services.get(EventServer)
    assert isinstance(started_by_the_wait, EventServer)
    assert not started_by_the_wait.explicit
    server = await serve_events_async()  # no options: the running one, now kept on purpose
    assert server is started_by_the_wait
    assert server.explicit
    assert (await post(session, server.event_url("lazy", "k"), "hi"))[0] == 202
    assert await handle == "hi"
    await runtime.aclose()
    assert server.closed
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(session, server.event_url("lazy", "k"), "too late")


async def test_serve_events_returns_the_running_server_and_refuses_to_replace_it(
    aruntime: evkit.Runtime,
) -> None:
    server = await serve_events_async()
    assert await serve_events_async(port=server.port) is server
    with pytest.raises(
        evkit.RunStateError, match=r"^An event server already runs at http://127\.0\.0\.1:\d+ with other"
    ):
        await serve_events_async(token="other")
    await server.aclose()
    assert server.closed
    replacement = await serve_events_async(token="other")
    assert replacement is not server
    assert replacement.requires_token


def test_server_on_a_thread_loop_is_served_and_closed_from_the_calling_thread(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(http_wait("k"), workflow_id="threaded")
    with workflow.serve_events() as server:
        # A blocking client is fine here: the engine's loop runs in its own thread.
        request = urllib.request.Request(
            server.event_url("threaded", "k"), data=b'{"from": "a thread"}', method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
        assert handle.result(timeout=10) == {"from": "a thread"}
    assert server.closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


async def test_http_wait_also_takes_events_sent_with_send_event(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(http_wait("k"), workflow_id="shared")
    await _until(lambda: handle.status is workflow.WAITING)
    await aruntime.engine().inbox.send("shared", "k", {"from": "notebook"})
    assert await handle == {"from": "notebook"}


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def _until(condition: object, timeout_seconds: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (the engine runs on this loop)."""
    assert callable(condition)
    async with asyncio.timeout(timeout_seconds):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.005)
