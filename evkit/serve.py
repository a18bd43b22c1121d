"""``serve_events``: start the HTTP event inbox on the engine's loop, from any thread.

It only validates options and carries the call to the engine's loop; the server itself
(routes, tokens, replies) is ``evkit.listeners.http``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from evkit.api import get_runtime
from evkit.engine import Engine
from evkit.listeners.http import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    EventServer,
    check_server_options,
    event_server,
)
from evkit.listeners.http_connection import DEFAULT_BODY_TIMEOUT_SECONDS, DEFAULT_HEADER_TIMEOUT_SECONDS
from evkit.listeners.webhooks import WebhookSignature

__all__ = ["DEFAULT_MAX_BODY_BYTES", "EventServer", "serve_events", "serve_events_async"]


def serve_events(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    verify: Mapping[str, WebhookSignature] | None = None,
) -> EventServer:
    """Serve the HTTP event inbox: ``POST /events/{workflow_id}/{key}`` with a JSON body.

    The server runs on the engine's loop (the kernel's, in a notebook), so it holds no
    thread. Each accepted event is stored durably before the 202 reply, and an
    ``HTTPListener`` wait on ``key`` in that run receives it, even if it starts waiting
    later. Called again with the same options (or none), it returns the running server;
    the first ``HTTPListener`` wait starts one on a free loopback port if you did not.

    Args:
        host: The address to listen on. Anything but loopback (``127.0.0.1``, ``::1``,
            ``localhost``) requires ``token``, or a ``verify`` rule for ``"*"``.
        port: The port; 0 picks a free one (read it from ``.port`` or ``.url``).
        token: If set, every request must send ``Authorization: Bearer <token>``
            (401 without it, 403 with a wrong one), except to keys with a ``verify`` rule.
        max_body_bytes: Larger bodies get 413 and nothing is stored (default 1 MiB).
        header_timeout_seconds: A connection that has not sent a complete request line
            and headers this long after it opened (or after its previous reply) gets 408
            and is closed, or just closed if it sent nothing (default 10 s): a slow or
            stalled client cannot hold it.
        body_timeout_seconds: A request whose whole body has not arrived this long after
            its headers gets 408 and nothing is stored (default 30 s).
        verify: Signed webhooks: a dict of event key (``"*"`` for every key without its
            own rule) to how its sender signs, e.g. ``{"github":
            workflow.GitHubSignature(secret=...)}``; also ``workflow.StripeSignature`` and
            ``workflow.HMACSignature``. A request to such a key must carry a valid
            signature of its raw body (401 and nothing stored otherwise) instead of the
            token, and its event's source is stored as ``http:<rule name>``. Secrets are
            kept in memory only: never stored, logged or shown in a repr.

    Returns:
        The server handle: ``.url``, ``.port``, ``.event_url(workflow_id, key)``,
        ``.close()``; closing the runtime closes it too.

    Raises:
        TypeError: ``verify`` is not a dict of str to a signature rule.
        ValueError: A bad option (e.g. a timeout that is not a positive number), or a
            non-loopback ``host`` without ``token`` nor a ``"*"`` rule in ``verify``.
        RunStateError: Another server started with ``serve_events`` runs with other options.
        OSError: The address cannot be bound.
        ImportError: aiohttp is not installed (``pip install 'evkit[http]'``).
    """
    start = _starter(
        host=host,
        port=port,
        token=token,
        max_body_bytes=max_body_bytes,
        header_timeout_seconds=header_timeout_seconds,
        body_timeout_seconds=body_timeout_seconds,
        verify=verify,
    )
    return get_runtime().call(start)


async def serve_events_async(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS,
    verify: Mapping[str, WebhookSignature] | None = None,
) -> EventServer:
    """Like :func:`serve_events`, awaitable from any loop.

    Raises:
        TypeError: ``verify`` is not a dict of str to a signature rule.
        ValueError: A bad option, or a non-loopback ``host`` without ``token`` nor a
            ``"*"`` rule in ``verify``.
        RunStateError: Another server started with ``serve_events`` runs with other options.
        OSError: The address cannot be bound.
    """
    start = _starter(
        host=host,
        port=port,
        token=token,
        max_body_bytes=max_body_bytes,
        header_timeout_seconds=header_timeout_seconds,
        body_timeout_seconds=body_timeout_seconds,
        verify=verify,
    )
    return await get_runtime().acall(start)


def _starter(
    *,
    host: str,
    port: int,
    token: str | None,
    max_body_bytes: int,
    header_timeout_seconds: float,
    body_timeout_seconds: float,
    verify: Mapping[str, WebhookSignature] | None,
) -> Callable[[Engine], Awaitable[EventServer]]:
    """What starts (or finds) the server on the engine's loop, once the options are checked.

    Raises:
        TypeError, ValueError: A bad option (see ``serve_events``).
    """
    check_server_options(
        host, port, token, max_body_bytes, header_timeout_seconds, body_timeout_seconds, verify
    )

    async def start(engine: Engine) -> EventServer:
        return await event_server(
            engine.services,
            host=host,
            port=port,
            token=token,
            max_body_bytes=max_body_bytes,
            header_timeout_seconds=header_timeout_seconds,
            body_timeout_seconds=body_timeout_seconds,
            verify=verify,
            clock=engine.clock,
            explicit=True,
        )

    return start
