"""A failed run is reported once: raised to whoever waits for it, logged only when nobody
does; an HTTP client that disconnects is not an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

import evkit
from evkit import workflow
from evkit.serve import serve_events_async


class FlakyPoll(workflow.EventListener):
    async def poll_for_event(self, key: str) -> str:  # type: ignore[override]
        raise ConnectionError(f"broker unreachable for {key}")


class Signal(logging.Handler):
    """Sets an asyncio event (on the test's loop) when a matching record is logged."""

    def __init__(self, level: int, text: str) -> None:
        super().__init__(level)
        self.text = text
        self.loop = asyncio.get_running_loop()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.loop.call_soon_threadsafe(self.seen.set)


@pytest.fixture
def evkit_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of evkit's loggers, INFO and up."""
    with caplog.at_level(logging.INFO, logger="evkit"):
        yield caplog


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("evkit") and r.levelno >= logging.WARNING
    ]


async def test_a_failed_run_that_is_awaited_is_raised_and_not_logged(
    aruntime: evkit.Runtime, evkit_logs: pytest.LogCaptureFixture
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(FlakyPoll, "k"), workflow_id="a")
    with pytest.raises(workflow.WorkflowExecutionError, match=r"^Listener FlakyPoll of event step"):
        await handle
    del handle
    assert warnings_of(evkit_logs) == []


def test_a_failed_run_called_with_run_is_raised_and_not_logged(
    runtime: evkit.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="evkit"):
        with pytest.raises(workflow.WorkflowExecutionError, match=r"^Listener FlakyPoll of event step"):
            workflow.wait_for_event(FlakyPoll, "k").run(workflow_id="r")
        with pytest.raises(workflow.WorkflowExecutionError, match=r"^Listener FlakyPoll of event step"):
            workflow.resume("r")
        assert warnings_of(caplog) == []


async def test_a_failed_run_whose_handle_nobody_awaits_is_logged_once(
    aruntime: evkit.Runtime, evkit_logs: pytest.LogCaptureFixture
) -> None:
    signal = Signal(logging.WARNING, "nothing awaited its handle")
    logging.getLogger("evkit").addHandler(signal)
    try:
        workflow.run_async(workflow.wait_for_event(FlakyPoll, "k"), workflow_id="o")  # handle dropped
        await asyncio.wait_for(signal.seen.wait(), 10)
    finally:
        logging.getLogger("evkit").removeHandler(signal)
    assert warnings_of(evkit_logs) == [
        "evkit run 'o' failed, and nothing awaited its handle: Listener FlakyPoll of event step "
        "'FlakyPoll' in run 'o' raised ConnectionError('broker unreachable for k') while polling. "
        "Resume the run to poll again (workflow.resume('o'))."
    ]
    assert workflow.get_status("o") is workflow.FAILED


@pytest.mark.slow  # the event server's start and shutdown
async def test_a_client_that_disconnects_mid_request_is_logged_at_debug_without_traceback(
    aruntime: evkit.Runtime, evkit_logs: pytest.LogCaptureFixture
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.HTTPListener, key="k"), workflow_id="h")
    server = await serve_events_async()
    url = urlparse(server.event_url("h", "k"))
    signal = Signal(logging.DEBUG, "disconnected")
    logging.getLogger("evkit").addHandler(signal)
    # A block, not set_level: inside the fixture's own at_level, set_level would leave the
    # evkit logger at INFO for every later test.
    with evkit_logs.at_level(logging.DEBUG, logger="evkit"):
        try:
            assert url.hostname is not None
            assert url.port is not None
            _, writer = await asyncio.open_connection(url.hostname, url.port)
            writer.write(
                f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                'Content-Length: 100\r\n\r\n{"partial": '.encode()
            )
            await writer.drain()
            writer.transport.abort()  # gone before the body is complete
            await asyncio.wait_for(signal.seen.wait(), 10)
        finally:
            logging.getLogger("evkit").removeHandler(signal)
    records = [
        r for r in evkit_logs.records if r.name.startswith("evkit") and "disconnected" in r.getMessage()
    ]
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.DEBUG, None)]
    assert (
        records[0]
        .getMessage()
        .startswith("evkit event server: the client of POST /events/h/k disconnected (")
    )
    assert warnings_of(evkit_logs) == []
    await handle.wait_waiting(timeout_seconds=5)  # the run still waits: nothing was delivered
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
