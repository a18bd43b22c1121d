"""The HTTP inbox against slow, malformed and hostile clients: header and body timeouts,
header size limits, the token checked before the body, JSON errors for what aiohttp
refuses itself, JSON depth and number limits, events for finished runs, and the length
limits of run ids and keys. Raw sockets on 127.0.0.1 send exactly the bytes under test."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

import evkit
from evkit import workflow
from evkit.serve import serve_events_async

# Every exchange below is bounded: a server that never answers fails the test, not hangs it.
REPLY_TIMEOUT_SECONDS = 5.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client; closed at teardown so no connection outlives the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


@workflow.step
def fail() -> None:
    raise RuntimeError("this step fails")


def http_wait(key: str) -> evkit.StepNode:
    return workflow.wait_for_event(workflow.HTTPListener, key=key)


class Reply:
    """A parsed HTTP reply read from a raw socket."""

    def __init__(self, head: bytes, body: bytes) -> None:
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        self.body = body

    def json(self) -> dict[str, object]:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        payload = json.loads(self.body)
        assert isinstance(payload, dict)
        return payload


async def read_reply(reader: asyncio.StreamReader) -> Reply | None:
    """The next reply on the connection, or None if the server closed it without one."""
    async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            partial = exc.partial
        else:
            reply = Reply(head[:-4], b"")
            reply.body = await reader.readexactly(int(reply.headers.get("content-length", "0")))
            return reply
    assert partial == b"", f"the server sent a partial reply: {partial!r}"
    return None


async def exchange(port: int, request: bytes) -> Reply | None:
    """Send raw bytes on a new connection and read the reply (None: closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_reply(reader)
    finally:
        writer.close()


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


# ---------------------------------------------------------------------- item 7: timeouts


@pytest.mark.slow
async def test_partial_request_head_gets_408_after_the_header_timeout(aruntime: evkit.Runtime) -> None:
    server = await serve_events_async(header_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /events/w/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        await writer.drain()
        # The rest of the head never comes: the server must answer and hang up on its own.
        reply = await read_reply(reader)
        assert reply is not None
        async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
            assert await reader.read() == b""  # then closed
    finally:
        writer.close()
    assert reply.status == 408
    assert reply.headers["connection"] == "close"
    assert reply.json() == {
        "error": "header_timeout",
        "message": "The request line and headers did not arrive within 0.2 s (the server's "
        "`header_timeout_seconds`). Nothing was stored; send the request again.",
    }


@pytest.mark.slow
async def test_idle_connection_is_closed_without_a_reply_after_the_header_timeout(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="idle")
    server = await serve_events_async(header_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # A first request on the connection, then nothing: the timer restarts after the
        # reply, and an idle connection is closed without an unasked-for 408.
        writer.write(b"POST /events/idle/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        first = await read_reply(reader)
        assert first is not None
        assert first.status == 202
        assert await read_reply(reader) is None
    finally:
        writer.close()


@pytest.mark.slow
async def test_rest_of_a_refused_body_is_not_taken_for_a_late_request_head(aruntime: evkit.Runtime) -> None:
    server = await serve_events_async(token="s3cret-token", header_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /events/w/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
            b"Authorization: Bearer nope\r\n\r\n"
        )
        await writer.drain()
        refused = await read_reply(reader)  # refused before the body was read
        assert refused is not None
        assert refused.status == 403
        writer.write(b"0123456789")  # the body, late: aiohttp drops it
        await writer.drain()
        # No 408 for a "request head" that was really the end of a body; the keep-alive
        # backstop closes the connection later.
        assert await read_reply(reader) is None
    finally:
        writer.close()


@pytest.mark.slow
async def test_body_that_does_not_arrive_in_time_gets_408_and_nothing_is_stored(
    aruntime: evkit.Runtime,
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="slow")
    server = await serve_events_async(body_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /events/slow/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n[1,")
        await writer.drain()
        reply = await read_reply(reader)
    finally:
        writer.close()
    assert reply is not None
    assert reply.status == 408
    assert reply.headers["connection"] == "close"
    assert reply.json() == {
        "error": "body_timeout",
        "message": "The body did not arrive within 0.2 s of the headers (the server's "
        "`body_timeout_seconds`). Nothing was stored; send the request again.",
    }
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_wrong_token_is_refused_before_the_body_is_sent(aruntime: evkit.Runtime) -> None:
    workflow.run_async(http_wait("k"), workflow_id="early")
    server = await serve_events_async(token="s3cret-token")
    # Headers only: the refusal must not wait for the 100 announced bytes.
    reply = await exchange(
        server.port,
        b"POST /events/early/k HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer nope\r\n"
        b"Content-Length: 100\r\n\r\n",
    )
    assert reply is not None
    assert (reply.status, reply.json()["error"]) == (403, "wrong_token")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Bearer s3cr\xfct", r"^The Authorization header has non-ASCII characters; send `Authorization"),
        ("Bearer s3cré".encode(), r"^The Authorization header has non-ASCII characters"),
    ],
)
async def test_non_ascii_authorization_header_gets_401_json(
    aruntime: evkit.Runtime, header: bytes, message: str
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="latin")
    server = await serve_events_async(token="s3cret-token")
    reply = await exchange(
        server.port,
        b"POST /events/latin/k HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
        + header
        + b"\r\nContent-Length: 1\r\n\r\n1",
    )
    assert reply is not None
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="evkit"'
    payload = reply.json()
    assert payload["error"] == "missing_token"
    assert isinstance(payload["message"], str)
    assert re.match(message, payload["message"]), payload["message"]


# ---------------------------------------------------------------------- aiohttp's own refusals


@pytest.mark.parametrize(
    ("request_bytes", "status", "error", "message"),
    [
        (
            b"POST /events/w/k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
            "The request headers are too large: at most 100 headers of at most 8190 bytes each",
        ),
        (
            b"POST /events/w/k HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "headers_too_large",
            "The request headers are too large",
        ),
        (
            b"POST /events/" + b"w" * 9000 + b"/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            "url_too_long",
            "The URL is longer than 6144 bytes",
        ),
        (
            b"POST /events/w/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: nope\r\n\r\n",
            400,
            "malformed_request",
            "The request is not valid HTTP/1.1",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "malformed_request", "The request"),
    ],
    ids=["long-header", "many-headers", "long-url", "bad-content-length", "tls-on-http"],
)
async def test_request_aiohttp_cannot_parse_gets_a_json_error_and_no_error_log(
    aruntime: evkit.Runtime,
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
    status: int,
    error: str,
    message: str,
) -> None:
    server = await serve_events_async()
    with caplog.at_level(logging.DEBUG):
        reply = await exchange(server.port, request_bytes)
    assert reply is not None
    assert reply.status == status
    payload = reply.json()
    assert payload["error"] == error
    assert isinstance(payload["message"], str)
    assert payload["message"].startswith(message), payload["message"]
    assert payload["message"].endswith("Nothing was stored.") or "nothing was stored" in payload["message"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_broken_chunked_body_gets_400_json(aruntime: evkit.Runtime) -> None:
    workflow.run_async(http_wait("k"), workflow_id="chunks")
    server = await serve_events_async()
    reply = await exchange(
        server.port,
        b"POST /events/chunks/k HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n[1\r\nzz\r\n",
    )
    assert reply is not None
    assert reply.status == 400
    payload = reply.json()
    assert payload["error"] == "malformed_request"
    # The part in parentheses is aiohttp's own words, e.g. "Invalid character in chunk size".
    pattern = r"^The request is not valid HTTP/1\.1 \(.*chunk.*\)\. Nothing was stored\.$"
    assert re.match(pattern, str(payload["message"]), re.S), payload["message"]
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


# ---------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b"[" * 3000 + b"]" * 3000, b'{"a":' * 101 + b"1" + b"}" * 101, b"[" * 101 + b"]" * 101],
    ids=["unclosed-5000", "valid-3000", "objects-101", "arrays-101"],
)
async def test_json_nested_beyond_the_limit_gets_400_saying_the_limit(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession, body: bytes
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="deep")
    server = await serve_events_async()
    async with session.post(server.event_url("deep", "k"), data=body) as reply:
        assert reply.status == 400
        payload = await reply.json()
    assert payload == {
        "error": "malformed_json",
        "message": "The body nests arrays and objects more than 100 levels deep; events may nest at "
        "most 100 levels. Send a flatter document; nothing was stored.",
    }
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_json_nested_exactly_to_the_limit_is_delivered(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("k"), workflow_id="deep-ok")
    server = await serve_events_async()
    async with session.post(server.event_url("deep-ok", "k"), data=b"[" * 100 + b"]" * 100) as reply:
        assert reply.status == 202
    value = await handle
    for _ in range(99):
        assert isinstance(value, list)
        value = value[0]
    assert value == []


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b'{"x": [2.5e308]}'])
async def test_number_beyond_a_float_gets_400_not_infinity(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession, number: bytes
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="inf")
    server = await serve_events_async()
    async with session.post(server.event_url("inf", "k"), data=number) as reply:
        assert reply.status == 400
        payload = await reply.json()
    assert payload["error"] == "malformed_json"
    assert "is too large for a 64-bit float (JSON has no Infinity)" in payload["message"]
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


# ---------------------------------------------------------------------- finished runs


async def _finished_run(runtime: evkit.Runtime, status: str) -> str:
    workflow_id = f"run-{status.lower()}"
    if status == "SUCCESSFUL":
        assert await workflow.run_async(collect.step(1), workflow_id=workflow_id) == (1,)
    elif status == "FAILED":
        with pytest.raises(evkit.WorkflowExecutionError):
            await workflow.run_async(fail.step(), workflow_id=workflow_id)
    else:
        handle = workflow.run_async(http_wait("other"), workflow_id=workflow_id)
        async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
            while handle.status is not workflow.WAITING:  # noqa: ASYNC110 - no event exists for this
                await asyncio.sleep(0.005)
        await runtime.engine().cancel(workflow_id)  # returns once CANCELED is recorded
    assert workflow.get_status(workflow_id) == status
    return workflow_id


@pytest.mark.parametrize("status", ["SUCCESSFUL", "CANCELED"])
@pytest.mark.parametrize("idempotency_key", [None, "once"])
async def test_post_to_a_finished_run_is_refused_with_409_naming_its_status(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession, status: str, idempotency_key: str | None
) -> None:
    workflow_id = await _finished_run(aruntime, status)
    server = await serve_events_async()
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    async with session.post(server.event_url(workflow_id, "k"), data=b"1", headers=headers) as reply:
        assert reply.status == 409
        payload = await reply.json()
    assert payload == {
        "error": "run_finished",
        "message": f"Run {workflow_id!r} is {status}: no step of it will wait for an event again, so "
        "this one could never be delivered. Nothing was stored; start the run again "
        "(workflow.run_async(..., workflow_id=...)) before posting.",
    }
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_retry_after_the_run_finished_is_still_a_duplicate_and_a_reused_key_a_conflict(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("k"), workflow_id="retry-late")
    server = await serve_events_async()
    url = server.event_url("retry-late", "k")
    async with session.post(url, data=b"1", headers={"Idempotency-Key": "pay-1"}) as reply:
        assert reply.status == 202
    assert await handle == 1
    assert workflow.get_status("retry-late") == "SUCCESSFUL"
    # The first reply may have been lost: the retry must still be told it is stored.
    async with session.post(url, data=b"1", headers={"Idempotency-Key": "pay-1"}) as reply:
        assert (reply.status, (await reply.json())["duplicate"]) == (202, True)
    other_key = server.event_url("retry-late", "other")
    async with session.post(other_key, data=b"1", headers={"Idempotency-Key": "pay-1"}) as reply:
        assert (reply.status, (await reply.json())["error"]) == (409, "idempotency_key_conflict")
    async with session.post(url, data=b"2", headers={"Idempotency-Key": "pay-2"}) as reply:
        assert (reply.status, (await reply.json())["error"]) == (409, "run_finished")


async def test_post_to_a_failed_run_is_kept_for_its_resume(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow_id = await _finished_run(aruntime, "FAILED")
    server = await serve_events_async()
    async with session.post(server.event_url(workflow_id, "k"), data=b"1") as reply:
        assert reply.status == 202
    # Resuming a FAILED run runs its failed steps again, and their waits may take it.
    assert await rows("SELECT workflow_id, key FROM inbox_events") == [(workflow_id, "k")]


# ---------------------------------------------------------------------- ids and keys


async def test_key_over_the_limit_in_the_path_gets_400(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="keys")
    server = await serve_events_async()
    async with session.post(f"{server.url}/events/keys/{'k' * 201}", data=b"1") as reply:
        assert reply.status == 400
        payload = await reply.json()
    assert payload["error"] == "invalid_key"
    assert isinstance(payload["message"], str)
    assert payload["message"].startswith("The event key in the path is 201 characters long; keys may")


async def test_event_url_refuses_ids_and_keys_over_the_limit(aruntime: evkit.Runtime) -> None:
    server = await serve_events_async()
    assert server.event_url("r" * 200, "k" * 200).endswith("/events/" + "r" * 200 + "/" + "k" * 200)
    with pytest.raises(ValueError, match=r"^The run id 'rrrr.*'\.\.\. is 201 characters long; event URLs"):
        server.event_url("r" * 201, "k")
    with pytest.raises(ValueError, match=r"^The event key 'kkk.*'\.\.\. is 201 characters long; keys of"):
        server.event_url("r", "k" * 201)


def test_new_run_id_and_event_key_over_the_limit_are_refused_at_the_call(runtime: evkit.Runtime) -> None:
    with pytest.raises(ValueError, match=r"^`workflow_id` must have at most 200 characters, got 201 "):
        workflow.run_async(collect.step(1), workflow_id="r" * 201)
    assert workflow.list_all() == []
    handle = workflow.run_async(collect.step(1), workflow_id="r" * 200)
    assert handle.result(timeout=10) == (1,)
    with pytest.raises(ValueError, match=r"^`key` must have at most 200 characters, got 201 "):
        workflow.send_event("r" * 200, "k" * 201, 1)
    with pytest.raises(ValueError, match=r"^send_events\('r+', \.\.\.\): the key of item 0 has 201 char"):
        workflow.send_events("r" * 200, [("k" * 201, 1)])


async def test_http_wait_on_a_key_over_the_limit_fails_its_step_saying_so(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(http_wait("k" * 201), workflow_id="long-key")
    with pytest.raises(evkit.WorkflowExecutionError) as failed:
        await handle
    cause = failed.value.__cause__
    assert isinstance(cause, ValueError)
    assert re.match(r"^The event key 'k+'\.\.\. is 201 characters long; keys of HTTP events may", str(cause))


def test_generated_run_id_stays_within_the_limit(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(collect.options(name="n" * 300).step(1))
    assert len(handle.workflow_id) == 200
    assert handle.result(timeout=10) == (1,)


def test_timeouts_must_be_positive_seconds() -> None:
    with pytest.raises(ValueError, match=r"^`header_timeout_seconds` must be a positive finite number"):
        workflow.serve_events(header_timeout_seconds=0)
    with pytest.raises(ValueError, match=r"^`body_timeout_seconds` must be a positive finite number"):
        workflow.serve_events(body_timeout_seconds=float("inf"))


# ---------------------------------------------------------------------- disconnects


async def test_client_that_disconnects_mid_body_is_logged_at_debug_without_traceback(
    aruntime: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    workflow.run_async(http_wait("k"), workflow_id="gone")
    server = await serve_events_async()
    with caplog.at_level(logging.DEBUG, logger="evkit.http"):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /events/gone/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n[1,")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
            while not any("disconnected" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110 - a log record has no event to wait on
                await asyncio.sleep(0.005)
    disconnect = next(r for r in caplog.records if "disconnected" in r.getMessage())
    assert disconnect.levelno == logging.DEBUG
    assert disconnect.exc_info is None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]
