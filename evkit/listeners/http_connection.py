"""The HTTP inbox's connections: request-head timeouts, header size limits, JSON errors.

It owns what happens on a connection before a request reaches the inbox's middleware:
aiohttp parses HTTP, and this module bounds how long and how large a request head may be
and answers what aiohttp cannot parse in the inbox's JSON error shape. It knows nothing
of runs, events or the store (``evkit.listeners.http`` does).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("evkit.http")

DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
"""How long a connection may take to send a complete request head (line and headers)."""
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
"""How long a request may take to send its whole body once its headers arrived."""
MAX_URL_BYTES = 6144
"""The longest URL accepted (longer: 414). Any ``event_url`` fits: a run id and a key of
200 characters each are at most 4,809 bytes once percent-encoded as UTF-8."""
MAX_HEADER_LINE_BYTES = 8190
"""The longest header line accepted (longer: 431)."""
MAX_HEADER_COUNT = 100
"""The most header lines a request may have (more: 431)."""


def json_error(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The inbox's error reply: ``{"error": code, "message": message}``."""
    from aiohttp import web as aioweb

    return aioweb.json_response({"error": code, "message": message}, status=status, headers=headers)


def connection_options(header_timeout_seconds: float) -> dict[str, Any]:
    """The keyword arguments of aiohttp's ``RequestHandler`` (Any: each is typed differently there)."""
    return {
        "access_log": None,
        # aiohttp's keep-alive timer also closes a connection still waiting for a request
        # head; EventConnection's own timer fires first (and answers 408), this is a backstop.
        "keepalive_timeout": 2 * header_timeout_seconds,
        "max_line_size": MAX_URL_BYTES,
        "max_field_size": MAX_HEADER_LINE_BYTES,
        "max_headers": MAX_HEADER_COUNT,
    }


class _TracksRequests(Protocol):
    def request_started(self) -> None: ...
    def request_finished(self, *, body_read: bool) -> None: ...


def connection_factory(
    server: web.Server, *, loop: asyncio.AbstractEventLoop, header_timeout_seconds: float
) -> Callable[[], web.RequestHandler]:
    """The protocol factory for ``loop.create_server``: one ``EventConnection`` per client.

    It replaces ``server`` itself as the factory (which would make a plain aiohttp
    ``RequestHandler``); the connections still report to ``server``, so the runner's
    shutdown finishes them.
    """
    # Callable: the class's own constructor takes the timeout, which aiohttp's does not.
    connection_class: Callable[..., web.RequestHandler] = _event_connection_class()
    options = connection_options(header_timeout_seconds)

    def connection() -> web.RequestHandler:
        return connection_class(server, loop=loop, header_timeout_seconds=header_timeout_seconds, **options)

    return connection


def head_timer_middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """The outermost middleware: stops a connection's head timer while its request is handled.

    Raises:
        ImportError: aiohttp is not installed.
    """
    from aiohttp import web as aioweb

    @aioweb.middleware
    async def head_timer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = request.protocol
        if not isinstance(connection, _event_connection_class()):
            return await handler(request)  # e.g. aiohttp's test server: no timer to stop
        tracked = cast("_TracksRequests", connection)
        tracked.request_started()
        try:
            return await handler(request)
        finally:
            tracked.request_finished(body_read=request.content.is_eof())

    return head_timer


@functools.cache
def _event_connection_class() -> type[web.RequestHandler]:
    """The ``RequestHandler`` of aiohttp, with a request-head timeout and JSON protocol errors.

    Made on first use so that evkit imports without aiohttp.
    """
    from aiohttp import web as aioweb

    class EventConnection(aioweb.RequestHandler):
        """One client connection of the event server.

        The head timer runs from the moment the connection opens and from the end of each
        request, and stops while a request is handled (the middleware tells it, through
        :meth:`request_started` and :meth:`request_finished`). When it fires, a client that
        had sent part of a request head gets 408; an idle one is just closed.
        """

        def __init__(self, manager: web.Server, *, header_timeout_seconds: float, **options: Any) -> None:
            super().__init__(manager, **options)
            self._evkit_head_timeout = header_timeout_seconds
            self._evkit_head_bytes = 0
            self._evkit_in_request = False
            self._evkit_head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # Armed before aiohttp's own keep-alive timer, which must stay the later one.
            self._evkit_arm()
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if not self._evkit_in_request:
                self._evkit_head_bytes += len(data)
            super().data_received(data)

        def connection_lost(self, exc: BaseException | None) -> None:
            self._evkit_disarm()
            super().connection_lost(exc)

        def request_started(self) -> None:
            """A complete request head arrived: stop the head timer while it is handled."""
            self._evkit_in_request = True
            self._evkit_disarm()

        def request_finished(self, *, body_read: bool) -> None:
            """The request was handled: the next head must arrive within the timeout.

            Not if its body was left unread (a refusal before reading it): aiohttp then
            reads and drops the rest of the body for a while, and those bytes are no head.
            The keep-alive timer bounds that connection instead.
            """
            self._evkit_in_request = False
            self._evkit_head_bytes = 0
            if body_read and self.transport is not None:
                self._evkit_arm()

        def handle_error(
            self,
            request: web.BaseRequest,
            status: int = 500,
            exc: BaseException | None = None,
            message: str | None = None,
        ) -> web.StreamResponse:
            # aiohttp answers a request it cannot parse before any middleware runs, in plain
            # text, logging a traceback; a client's mistake is neither a server error nor
            # worth a traceback. A 500 here is a bug of ours: keep aiohttp's handling.
            if status == 500 or request.writer.output_size > 0:
                return super().handle_error(request, status, exc, message)
            logger.debug("evkit event server: refused a malformed request from %s: %s", request.remote, exc)
            reply = protocol_error(status, exc)
            reply.force_close()
            return reply

        def _evkit_arm(self) -> None:
            self._evkit_disarm()
            self._evkit_head_timer = asyncio.get_running_loop().call_later(
                self._evkit_head_timeout, self._evkit_head_timed_out
            )

        def _evkit_disarm(self) -> None:
            if self._evkit_head_timer is not None:
                self._evkit_head_timer.cancel()
                self._evkit_head_timer = None

        def _evkit_head_timed_out(self) -> None:
            self._evkit_head_timer = None
            transport = self.transport
            if self._evkit_in_request or transport is None:
                return
            if self._evkit_head_bytes:
                logger.debug(
                    "evkit event server: %s sent no complete request head within %g s; replied 408",
                    transport.get_extra_info("peername"),
                    self._evkit_head_timeout,
                )
                transport.write(_head_timeout_reply(self._evkit_head_timeout))
            self.force_close()  # closes after the reply is flushed

    return EventConnection


def _head_timeout_reply(timeout_seconds: float) -> bytes:
    # Raw bytes: there is no request object to answer through aiohttp, as the head is incomplete.
    body = json.dumps(
        {
            "error": "header_timeout",
            "message": f"The request line and headers did not arrive within {timeout_seconds:g} s (the "
            "server's `header_timeout_seconds`). Nothing was stored; send the request again.",
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_error(status: int, exc: BaseException | None) -> web.Response:
    """The JSON reply to a request aiohttp could not parse."""
    from aiohttp.http_exceptions import LineTooLong

    detail = str(getattr(exc, "message", None) or exc or "malformed request")
    # aiohttp says which limit a line broke, not which line: the two limits differ for that.
    if isinstance(exc, LineTooLong) and str(exc.args[1]) == str(MAX_URL_BYTES):
        return json_error(
            414,
            "url_too_long",
            f"The URL is longer than {MAX_URL_BYTES} bytes. Event URLs hold a run id and a key of at "
            "most 200 characters each: use EventServer.event_url(). Nothing was stored.",
        )
    if isinstance(exc, LineTooLong) or "too many headers" in detail.lower():
        return json_error(
            431,
            "headers_too_large",
            f"The request headers are too large: at most {MAX_HEADER_COUNT} headers of at most "
            f"{MAX_HEADER_LINE_BYTES} bytes each ({detail}). Nothing was stored.",
        )
    return json_error(
        status,
        "malformed_request",
        f"The request is not valid HTTP/1.1 ({detail}). Nothing was stored.",
    )
