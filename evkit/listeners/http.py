"""The HTTP inbox: a server on the engine's loop, and the listener that waits on it.

The aiohttp server stores POSTed events in the durable inbox; :class:`HTTPListener`
waits for them. It owns request validation, tokens, which key needs which webhook
signature (the schemes are ``evkit.listeners.webhooks``) and the JSON replies; storing,
deduplicating and waking waits is the inbox's job (``evkit.listeners.manual``). It must not reply with
success before the event is durable, and it never parses HTTP itself.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar, final
from urllib.parse import quote

from evkit.answers import InvalidAnswer, json_schema
from evkit.clock import Clock, WallClock
from evkit.context import get_event_context
from evkit.errors import RunStateError
from evkit.listeners.ask import Questions, answer_error
from evkit.listeners.http_body import (
    MAX_IDEMPOTENCY_KEY_CHARS as MAX_IDEMPOTENCY_KEY_CHARS,
    parse_json,
    valid_idempotency_key,
)
from evkit.listeners.http_connection import (
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DEFAULT_HEADER_TIMEOUT_SECONDS,
    connection_factory,
    connection_options,
    head_timer_middleware,
    json_error as _error,
)
from evkit.listeners.manual import Inbox, ManualListener, SendResult
from evkit.listeners.webhooks import (
    ALL_KEYS,
    SignatureRefusal,
    WebhookSignature,
    check_verify_option,
    rule_for,
)
from evkit.model import MAX_EVENT_KEY_CHARS, MAX_WORKFLOW_ID_CHARS, WorkflowStatus
from evkit.services import Service, ServiceRegistry
from evkit.store.service import StoreReads

if TYPE_CHECKING:
    from aiohttp import web

T = TypeVar("T")
logger = logging.getLogger("evkit.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 1_048_576
"""The default limit of an event's body: 1 MiB."""
ROUTE = "/events/{workflow_id}/{key}"
_SHUTDOWN_TIMEOUT_SECONDS = 5.0


class HTTPListener(ManualListener):
    """Waits for an event POSTed to ``/events/{workflow_id}/{key}`` of the event server.

    ``workflow.wait_for_event(workflow.HTTPListener, key="approval")``: the step's value
    is the request's JSON body. The server runs on the engine's loop; the first HTTP wait
    starts it on a free loopback port if ``workflow.serve_events()`` did not (its URL is
    ``workflow.serve_events().url``). An event POSTed before the wait starts is kept and
    delivered when it does; a retry with the same ``Idempotency-Key`` is delivered once.
    It shares the inbox with ``send_event``: a ``ManualListener`` wait on the same key
    takes HTTP events too, and this one takes events sent with ``send_event``.
    """

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        """Start the event server if needed, then return the oldest unclaimed event's body.

        Raises:
            ValueError: ``key`` is longer than ``MAX_EVENT_KEY_CHARS`` (200), so no event
                URL could reach it.
            ImportError: aiohttp is not installed (``pip install 'evkit[http]'``).
            OSError: The server could not listen.
        """
        check_event_key(key)
        context = get_event_context()
        await event_server(context.services, clock=context.clock)
        return await super().poll_for_event(key)


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def check_event_key(key: str) -> None:
    """Refuse an event key too long for an event URL.

    Raises:
        ValueError: ``key`` is longer than ``MAX_EVENT_KEY_CHARS``.
    """
    if len(key) > MAX_EVENT_KEY_CHARS:
        raise ValueError(
            f"The event key {key[:40]!r}... is {len(key)} characters long; keys of HTTP events may "
            f"have at most {MAX_EVENT_KEY_CHARS}, so that event URLs stay within what servers "
            "accept. Use a shorter `key`."
        )


def check_server_options(
    host: object,
    port: object,
    token: object,
    max_body_bytes: object,
    header_timeout_seconds: object = DEFAULT_HEADER_TIMEOUT_SECONDS,
    body_timeout_seconds: object = DEFAULT_BODY_TIMEOUT_SECONDS,
    verify: object = None,
) -> dict[str, WebhookSignature]:
    """Validate ``serve_events`` options before anything starts; return the ``verify`` rules.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of range, or a non-loopback ``host`` has neither a
            ``token`` nor a ``verify`` rule for every key (``"*"``).
    """
    if not isinstance(host, str) or not host:
        raise TypeError(f"`host` must be a non-empty str such as '127.0.0.1', got {host!r}.")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"`port` must be an int from 0 to 65535 (0 picks a free port), got {port!r}.")
    if token is not None and (not isinstance(token, str) or not token.strip() or token != token.strip()):
        raise ValueError("`token` must be a non-empty str without surrounding spaces, or None.")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
        raise ValueError(f"`max_body_bytes` must be a positive int, got {max_body_bytes!r}.")
    for name, value in (
        ("header_timeout_seconds", header_timeout_seconds),
        ("body_timeout_seconds", body_timeout_seconds),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"`{name}` must be a positive finite number of seconds, got {value!r}.")
    rules = check_verify_option({} if verify is None else verify)
    # A signature authenticates its request as well as a token does: a server whose every
    # key needs one may face the internet without a token (webhook senders send none).
    if token is None and ALL_KEYS not in rules and not is_loopback(host):
        raise ValueError(
            f"Binding the event server to {host!r} exposes it beyond this machine, so it needs a "
            "`token=`: every request must then send `Authorization: Bearer <token>`. Pass a long "
            "random token (e.g. secrets.token_urlsafe(32)), or a `verify={'*': ...}` rule so that "
            "every request must be signed, or bind to '127.0.0.1'."
        )
    return rules


@final
class EventServer(Service):
    """The HTTP inbox of one engine: ``POST /events/{workflow_id}/{key}`` with a JSON body.

    Made by ``workflow.serve_events()`` (or by the first HTTP wait). A reply of success
    (202) is sent only once the event is durably in the store. A context manager: exiting
    stops the server (queued events stay stored; runs go on waiting); it does not close
    the store or cancel runs. Closing the runtime stops it too.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the one picked when asked for port 0).
        max_body_bytes: Bodies larger than this get 413.
        header_timeout_seconds: A connection that has not sent a complete request head
            this long after it opened (or after its previous reply) gets 408 and is
            closed (just closed if it sent nothing).
        body_timeout_seconds: A request whose body has not fully arrived this long after
            its headers gets 408 and nothing is stored.
        verify: The signature rules by event key (``"*"``: every key without its own);
            a request to a key with a rule must be signed (401 otherwise), and needs no
            token. Their reprs show ``secret=***``.
        explicit: True if ``serve_events`` asked for it (False: a wait started it).
    """

    def __init__(
        self,
        services: ServiceRegistry,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        verify: Mapping[str, WebhookSignature] | None = None,
        clock: Clock | None = None,
        explicit: bool = False,
    ) -> None:
        rules = check_server_options(
            host, port, token, max_body_bytes, header_timeout_seconds, body_timeout_seconds, verify
        )
        self._services = services
        self._inbox = services.require(Inbox)
        self._store = services.require(StoreReads)
        self.host = host
        self.port = port
        self._requested_port = port
        self._token = token
        self.max_body_bytes = max_body_bytes
        self.header_timeout_seconds = float(header_timeout_seconds)
        self.body_timeout_seconds = float(body_timeout_seconds)
        self.verify: Mapping[str, WebhookSignature] = MappingProxyType(rules)
        # Stripe's timestamps are checked against the engine's clock (a FakeClock in tests).
        self._clock: Clock = clock if clock is not None else WallClock()
        self.explicit = explicit
        self._loop = asyncio.get_running_loop()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._closed = False
        # Requests being accepted, by (workflow_id, Idempotency-Key): a concurrent repeat
        # waits for the first to finish, so the committed read below is enough to decide.
        self._accepting: dict[tuple[str, str], asyncio.Future[None]] = {}

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<evkit.EventServer {self.url} {state}>"

    # ------------------------------------------------------------------ public handle

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def event_url(self, workflow_id: str, key: str) -> str:
        """The URL to POST an event for ``key`` of run ``workflow_id`` to.

        Raises:
            ValueError: ``workflow_id`` is longer than ``MAX_WORKFLOW_ID_CHARS`` or ``key``
                longer than ``MAX_EVENT_KEY_CHARS`` (200 each): the URL could be too long.
        """
        if len(workflow_id) > MAX_WORKFLOW_ID_CHARS:
            raise ValueError(
                f"The run id {workflow_id[:40]!r}... is {len(workflow_id)} characters long; event URLs "
                f"take run ids of at most {MAX_WORKFLOW_ID_CHARS} (new runs cannot get longer ones). "
                "Send this run's events with workflow.send_event() instead."
            )
        check_event_key(key)
        return f"{self.url}/events/{quote(workflow_id, safe='')}/{quote(key, safe='')}"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`aclose` was called."""
        return self._closed

    @property
    def requires_token(self) -> bool:
        """True if every request must carry ``Authorization: Bearer <token>``."""
        return self._token is not None

    def matches(
        self,
        *,
        host: str,
        port: int,
        token: str | None,
        max_body_bytes: int,
        header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
        body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
        verify: Mapping[str, WebhookSignature] | None = None,
    ) -> bool:
        """True if this server is what ``serve_events`` with these options asks for."""
        return (
            host == self.host
            and port in (0, self.port)
            and token == self._token
            and max_body_bytes == self.max_body_bytes
            and header_timeout_seconds == self.header_timeout_seconds
            and body_timeout_seconds == self.body_timeout_seconds
            and dict(verify or {}) == dict(self.verify)
        )

    def __enter__(self) -> EventServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> EventServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Stop the server, from any thread.

        On its own loop's thread (a notebook cell) it stops listening at once and finishes
        the requests in flight in the background.
        """
        running = _running_loop()
        if running is self._loop:
            self.close_nowait()
        elif self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result()
        elif running is None and not self._loop.is_closed():
            self._loop.run_until_complete(self.aclose())
        else:
            self._close_stopped()

    def close_nowait(self) -> None:
        """Stop listening now; requests in flight finish in a task of the server's loop.

        Must be called on the server's loop thread.
        """
        self._closed = True
        if self._stopping is None:
            self._unregister()
            if self._listener is not None:
                self._listener.close()
            self._stopping = self._loop.create_task(self._shutdown(), name="evkit-http-shutdown")

    async def aclose(self) -> None:
        """Stop listening and wait (at most 5 s) for requests in flight to finish."""
        if _running_loop() is not self._loop:
            if self._loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.aclose(), self._loop))
            else:
                self._close_stopped()
            return
        self.close_nowait()
        assert self._stopping is not None
        await asyncio.shield(self._stopping)

    def _close_stopped(self) -> None:
        # The server's loop does not run (it ended, or it is paused elsewhere): no request
        # can be in flight, so stop listening without awaiting anything.
        self._closed = True
        self._unregister()
        if self._listener is not None:
            self._listener.close()

    # ------------------------------------------------------------------ life cycle

    async def wait_started(self) -> None:
        """Start listening (once; concurrent callers share the start).

        Raises:
            ImportError: aiohttp is not installed.
            OSError: The address cannot be bound (the message says which).
            RunStateError: The server was closed.
        """
        if self._closed:
            raise RunStateError(
                f"The event server at {self.url} is closed; call workflow.serve_events() again."
            )
        if self._starting is None:
            self._starting = self._loop.create_task(self._start(), name="evkit-http-start")
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        try:
            from aiohttp import web
        except ImportError as exc:  # pragma: no cover - aiohttp is in the test environment
            raise ImportError("The HTTP event inbox needs aiohttp: pip install 'evkit[http]'.") from exc
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[head_timer_middleware(), self._make_middleware()],
        )
        app.router.add_post(ROUTE, self._post_event)
        options = connection_options(self.header_timeout_seconds)
        runner = web.AppRunner(app, shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS, **options)
        await runner.setup()
        server = runner.server
        assert server is not None  # set by setup()
        connection = connection_factory(
            server, loop=self._loop, header_timeout_seconds=self.header_timeout_seconds
        )
        try:
            listener = await self._loop.create_server(connection, self.host, self._requested_port)
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"The evkit event server cannot listen on {self.host}:{self._requested_port}: "
                f"{exc.strerror or exc}. Pick another `port` (0 picks a free one).",
            ) from exc
        self._runner, self._listener = runner, listener
        self.port = int(listener.sockets[0].getsockname()[1])
        logger.info("evkit event inbox listening on %s (POST %s)", self.url, ROUTE)

    async def _shutdown(self) -> None:
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _unregister(self) -> None:
        self._services.remove(self)

    # ------------------------------------------------------------------ requests

    def _make_middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        from aiohttp import web as aioweb
        from aiohttp.web_protocol import RequestPayloadError

        @aioweb.middleware
        async def checks(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            denied = self._check_sender(request)
            if denied is not None:
                return denied
            try:
                return await handler(request)
            except aioweb.HTTPException as exc:
                if exc.status < 400:
                    raise
                return _translate(request, exc, self.max_body_bytes)
            except ConnectionError as exc:
                # The client went away mid-request: nothing to reply to and nothing wrong
                # with the server, so no traceback. aiohttp drops the reply quietly.
                logger.debug(
                    "evkit event server: the client of %s %s disconnected (%s); nothing was stored",
                    request.method,
                    request.path,
                    exc,
                )
                return _error(400, "client_disconnected", "The client disconnected; nothing was stored.")
            except RequestPayloadError as exc:
                return _error(
                    400,
                    "malformed_body",
                    f"The body could not be read ({exc}); check its Content-Length or chunked "
                    "encoding. Nothing was stored.",
                )
            except Exception as exc:
                logger.exception("evkit event server: %s %s failed", request.method, request.path)
                return _error(
                    500,
                    "not_stored",
                    f"The event may not have been stored ({type(exc).__name__}: {exc}). Retry with "
                    "the same Idempotency-Key: a repeat is stored and delivered once.",
                )

        return checks

    def _rule(self, request: web.Request) -> WebhookSignature | None:
        """The signature rule of the request's event key (``None``: none, or no event route)."""
        key = request.match_info.get("key")
        return rule_for(self.verify, key) if key is not None and self.verify else None

    def _check_sender(self, request: web.Request) -> web.StreamResponse | None:
        """Refuse a request to a signed key without its signature header, else check the token.

        Runs as soon as the headers have arrived; the signature itself is checked once the
        body has arrived (``_post_event``). A signed key needs no token: webhook senders
        cannot send one, and the signature authenticates the request.
        """
        rule = self._rule(request)
        if rule is None:
            return self._check_token(request)
        if request.headers.get(rule.header) is None:
            return self._refuse_signature(request, rule, rule.missing(request.match_info["key"]))
        return None

    def _refuse_signature(
        self, request: web.Request, rule: WebhookSignature, refusal: SignatureRefusal
    ) -> web.Response:
        # DEBUG like the other refusals a client causes; the line names no secret nor signature.
        logger.debug(
            "evkit event server: refused %s %s: %s (signature rule %r)",
            request.method,
            request.path,
            refusal.code,
            rule.name,
        )
        return _error(
            401,
            refusal.code,
            refusal.message,
            headers={"WWW-Authenticate": f'Signature header="{rule.header}"'},
        )

    def _check_token(self, request: web.Request) -> web.StreamResponse | None:
        if self._token is None:
            return None
        header = request.headers.get("Authorization")
        if header is None:
            return _error(
                401,
                "missing_token",
                "This event server needs a token: send the header `Authorization: Bearer <token>`.",
                headers={"WWW-Authenticate": 'Bearer realm="evkit"'},
            )
        if not header.isascii():
            # aiohttp decodes header bytes as UTF-8 with surrogate escapes; a token is ASCII.
            return _error(
                401,
                "missing_token",
                "The Authorization header has non-ASCII characters; send `Authorization: Bearer "
                "<token>` with the server's (ASCII) token.",
                headers={"WWW-Authenticate": 'Bearer realm="evkit"'},
            )
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return _error(
                401,
                "missing_token",
                f"The Authorization header must be `Bearer <token>`, got a {scheme!r} header.",
                headers={"WWW-Authenticate": 'Bearer realm="evkit"'},
            )
        if not hmac.compare_digest(value.strip().encode(), self._token.encode()):
            return _error(403, "wrong_token", "The bearer token is wrong for this event server.")
        return None

    async def _post_event(self, request: web.Request) -> web.StreamResponse:
        workflow_id = request.match_info["workflow_id"]
        key = request.match_info["key"]
        rule = self._rule(request)
        id_header = "Idempotency-Key"
        event_id = request.headers.get(id_header)
        if event_id is None and rule is not None and rule.event_id_header is not None:
            # The sender's own delivery id (GitHub's X-GitHub-Delivery): a redelivery or a
            # replay of a signed request is then a duplicate, not a second event.
            id_header = rule.event_id_header
            event_id = request.headers.get(id_header)
        if event_id is not None and not valid_idempotency_key(event_id):
            return _error(
                400,
                "invalid_idempotency_key",
                f"The {id_header} header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII "
                f"characters without spaces, got {event_id[:60]!r}. Nothing was stored.",
            )
        if len(key) > MAX_EVENT_KEY_CHARS:
            return _error(
                400,
                "invalid_key",
                f"The event key in the path is {len(key)} characters long; keys may have at most "
                f"{MAX_EVENT_KEY_CHARS} (no wait can have a longer one). Nothing was stored.",
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _too_large(request.content_length, self.max_body_bytes)
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                body = await request.read()  # over the limit (chunked): raises 413, see _translate
        except TimeoutError:
            timed_out = _error(
                408,
                "body_timeout",
                f"The body did not arrive within {self.body_timeout_seconds:g} s of the headers (the "
                "server's `body_timeout_seconds`). Nothing was stored; send the request again.",
            )
            timed_out.force_close()  # the rest of the body would be taken for the next request
            return timed_out
        if rule is not None:
            # On the raw bytes, before any parsing: the sender signed exactly these.
            signatures = request.headers.getall(rule.header, [])
            if len(signatures) == 1:
                refusal = rule.check(signatures[0], body, now=self._clock.now())
            else:
                refusal = SignatureRefusal(
                    code="bad_signature",
                    message=f"The `{rule.header}` header was sent {len(signatures)} times; send it once. "
                    "Nothing was stored.",
                )
            if refusal is not None:
                return self._refuse_signature(request, rule, refusal)
        source = "http" if rule is None else f"http:{rule.name}"
        payload, problem = parse_json(body)
        if problem is not None:
            return _error(400, "malformed_json", problem)
        refused, payload = self._check_answer(workflow_id, key, payload, source)
        if refused is not None:
            return refused
        # Shielded: a disconnecting client or a server shutdown must not cancel a write the
        # inbox shares with other events, nor leave a repeat unguarded (the store decides,
        # then we reply).
        outcome = await asyncio.shield(self._accept(workflow_id, key, event_id, payload, source))
        if isinstance(outcome, SendResult):
            from aiohttp import web as aioweb

            return aioweb.json_response(
                {
                    "workflow_id": workflow_id,
                    "key": key,
                    "event_id": outcome.event_id,
                    "duplicate": outcome.duplicate,
                },
                status=202,
            )
        return outcome

    def _check_answer(
        self, workflow_id: str, key: str, payload: object, source: str
    ) -> tuple[web.Response | None, object]:
        """``(None, what to store)``, or ``(a 400, None)`` for an answer a question refuses.

        Only while a ``workflow.ask`` step waits on the key: its model validates the body.
        """
        questions = self._services.get(Questions)
        question = questions.find(workflow_id, key) if questions is not None else None
        if questions is None or question is None:
            return None, payload
        try:
            return None, questions.check(workflow_id, key, payload, answered_by=source)
        except InvalidAnswer as exc:
            from aiohttp import web as aioweb

            error = answer_error(exc, question, call=f"POST /events/{workflow_id}/{key}")
            body = {
                "error": "invalid_answer",
                "message": str(error),
                "fields": [{"field": field, "message": message} for field, message in exc.errors],
                "schema": json_schema(question.model),
            }
            return aioweb.json_response(body, status=400), None

    async def _accept(
        self, workflow_id: str, key: str, event_id: str | None, payload: object, source: str
    ) -> SendResult | web.Response:
        """Check the run and the Idempotency-Key, then store the event durably, from ``source``."""
        if event_id is None:
            if not self._store.is_active(workflow_id):
                refusal = _refuse_status(workflow_id, await self._store.stored_status(workflow_id))
                if refusal is not None:
                    return refusal
            return await self._inbox.send(workflow_id, key, payload, source=source)
        marker = (workflow_id, event_id)
        while (earlier := self._accepting.get(marker)) is not None:
            await earlier
        accepting = self._accepting[marker] = self._loop.create_future()
        try:
            # Committed data is enough: an earlier request with this key either replied
            # (so its event is committed) or is still accepting (and we waited for it).
            status, used_for = await self._store.lookup_sent_event(workflow_id, event_id)
            # A repeat is answered as one even once the run has finished: the client may be
            # retrying because the first reply was lost.
            if used_for == key:
                return SendResult(event_id, duplicate=True)
            if used_for is not None:
                return _error(
                    409,
                    "idempotency_key_conflict",
                    f"Idempotency-Key {event_id!r} was already used for key {used_for!r} of run "
                    f"{workflow_id!r}; use a key unique within the run. Nothing was stored.",
                )
            if not self._store.is_active(workflow_id):
                refusal = _refuse_status(workflow_id, status)
                if refusal is not None:
                    return refusal
            return await self._inbox.send(
                workflow_id, key, payload, event_id=event_id, source=source, known_new=True
            )
        finally:
            del self._accepting[marker]
            accepting.set_result(None)


async def event_server(
    services: ServiceRegistry,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    verify: Mapping[str, WebhookSignature] | None = None,
    clock: Clock | None = None,
    explicit: bool = False,
) -> EventServer:
    """The engine's event server, started if needed (runs on the engine's loop).

    A wait (``explicit=False``) takes whatever server runs. ``serve_events``
    (``explicit=True``) gets the running one if it matches its options (port 0 matches
    any port) or gives none (all defaults: "the server, whatever it is"), replaces one a
    wait started, and refuses to replace another explicit one.

    Raises:
        RunStateError: Another explicitly started server runs with other options.
        OSError: The address cannot be bound.
    """
    existing = services.get(EventServer)
    if existing is not None and not existing.closed:
        wanted = {
            "host": host,
            "port": port,
            "token": token,
            "max_body_bytes": max_body_bytes,
            "header_timeout_seconds": header_timeout_seconds,
            "body_timeout_seconds": body_timeout_seconds,
            "verify": verify,
        }
        # `serve_events()` with no options must find a server started with a token or rules,
        # as its docs and the refusal below say: it asks for no particular options.
        asks_nothing = {**wanted, "verify": verify or None} == _DEFAULT_OPTIONS
        if not explicit or asks_nothing or existing.matches(**wanted):  # type: ignore[arg-type]
            existing.explicit = existing.explicit or explicit
            await existing.wait_started()
            return existing
        if existing.explicit:
            raise RunStateError(
                f"An event server already runs at {existing.url} with other options. Close it "
                "first (workflow.serve_events().close()), or call serve_events() with no "
                "arguments to get it."
            )
        await existing.aclose()
    server = EventServer(
        services,
        host=host,
        port=port,
        token=token,
        max_body_bytes=max_body_bytes,
        header_timeout_seconds=header_timeout_seconds,
        body_timeout_seconds=body_timeout_seconds,
        verify=verify,
        clock=clock,
        explicit=explicit,
    )
    services.add(server)
    try:
        await server.wait_started()
    except BaseException:
        server.close_nowait()
        raise
    return server


_DEFAULT_OPTIONS: dict[str, object] = {
    "host": DEFAULT_HOST,
    "port": 0,
    "token": None,
    "max_body_bytes": DEFAULT_MAX_BODY_BYTES,
    "header_timeout_seconds": DEFAULT_HEADER_TIMEOUT_SECONDS,
    "body_timeout_seconds": DEFAULT_BODY_TIMEOUT_SECONDS,
    "verify": None,
}
"""``serve_events``'s options when a call gives none."""


# ---------------------------------------------------------------------- helpers


def _unknown_workflow(workflow_id: str) -> web.Response:
    return _error(
        404,
        "unknown_workflow",
        f"Run {workflow_id!r} is not in this store. Start it first "
        "(workflow.run_async(..., workflow_id=...)); nothing was stored.",
    )


def _refuse_status(workflow_id: str, status: str | None) -> web.Response | None:
    """The refusal for a run that is not live here, or ``None`` if it may take events.

    A RESUMABLE or FAILED run takes them: resuming it delivers them. A SUCCESSFUL or
    CANCELED run never waits again, so its events could never be delivered.
    """
    if status is None:
        return _unknown_workflow(workflow_id)
    if status in (WorkflowStatus.SUCCESSFUL, WorkflowStatus.CANCELED):
        return _error(
            409,
            "run_finished",
            f"Run {workflow_id!r} is {status}: no step of it will wait for an event again, so this "
            "one could never be delivered. Nothing was stored; start the run again "
            "(workflow.run_async(..., workflow_id=...)) before posting.",
        )
    return None


def _too_large(size: int | None, limit: int) -> web.Response:
    got = f"is {size} bytes" if size is not None else "is larger"
    return _error(
        413,
        "body_too_large",
        f"The body {got}; this event server accepts at most {limit} bytes (its `max_body_bytes`). "
        "Nothing was stored.",
    )


def _translate(request: web.Request, exc: web.HTTPException, limit: int) -> web.Response:
    """Turn aiohttp's own 4xx (no route, wrong method, too large) as JSON errors."""
    if exc.status == 404:
        return _error(
            404,
            "not_found",
            f"No route for {request.method} {request.path}. "
            "Send events with POST /events/<workflow_id>/<key>.",
        )
    if exc.status == 405:
        allow = exc.headers.get("Allow", "POST")
        return _error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; send events with {allow}.",
            headers={"Allow": allow},
        )
    if exc.status == 413:
        return _too_large(request.content_length, limit)
    return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
