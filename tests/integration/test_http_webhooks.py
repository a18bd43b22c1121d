"""Signed webhooks on a real loopback server with a real client (aiohttp): requests signed
as GitHub, Stripe and a generic HMAC sender document it are stored with their sender as
source; every refusal is a 401 with a JSON reason and stores nothing. Stripe timestamps
are checked against the runtime's FakeClock, so "expired" and "future" are exact."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest

import evkit
from evkit import workflow
from evkit.serve import serve_events_async

# GitHub's "Validating webhook deliveries" test vector.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

STRIPE_SECRET = "whsec_test_secret_for_evkit"
STRIPE_BODY = b'{"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "payment_intent.succeeded"}'


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client; closed at teardown so no connection outlives the test."""
    async with aiohttp.ClientSession() as client:
        yield client


def github_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stripe_signature(timestamp: int, body: bytes, *secrets: str) -> str:
    """``Stripe-Signature`` as Stripe builds it: a v1 per secret over "{t}.{body}"."""
    signatures = (
        hmac.new(s.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest() for s in secrets
    )
    return f"t={timestamp}," + ",".join(f"v1={signature}" for signature in signatures)


def now(runtime: evkit.Runtime) -> int:
    clock = runtime.clock
    assert isinstance(clock, evkit.FakeClock)
    return int(clock.now())


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
) -> tuple[int, dict[str, object], Mapping[str, str]]:
    async with session.post(url, data=body, headers=headers) as reply:
        return reply.status, await reply.json(), reply.headers


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


def http_wait(key: str) -> evkit.StepNode:
    return workflow.wait_for_event(workflow.HTTPListener, key=key)


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


async def _until(condition: object, timeout_seconds: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (the engine runs on this loop)."""
    assert callable(condition)
    async with asyncio.timeout(timeout_seconds):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.005)


async def test_github_signed_events_are_stored_with_github_as_their_source(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("push"), workflow_id="repo")
    server = await serve_events_async(verify={"*": workflow.GitHubSignature(secret=GITHUB_SECRET)})
    await _until(lambda: handle.status is workflow.WAITING)
    push = b'{"ref": "refs/heads/main", "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}'
    # One to the waiting step (handed straight to its checkpoint), one kept in the inbox.
    for key in ("push", "ping"):
        status, reply, _ = await post(
            session,
            server.event_url("repo", key),
            push,
            {"X-Hub-Signature-256": github_signature(GITHUB_SECRET, push), "X-GitHub-Event": key},
        )
        assert (status, reply["duplicate"]) == (202, False)
    assert await handle == json.loads(push)
    assert await rows("SELECT key, source FROM inbox_events ORDER BY key") == [
        ("ping", "http:github"),
        ("push", "http:github"),
    ]


async def test_github_redelivery_with_the_same_delivery_id_is_stored_once(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(collect.step(http_wait("push"), http_wait("push")), workflow_id="redeliver")
    server = await serve_events_async(verify={"push": workflow.GitHubSignature(secret=GITHUB_SECRET)})
    url = server.event_url("redeliver", "push")
    delivery, next_delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958", "9d0e8d34-1c6f-4b3e-a5a4-5a3e0e2f1d11"
    replies = []
    # GitHub keeps a delivery's id when it redelivers it: the repeat is a duplicate.
    for body, delivery_id in ((b'{"n": 1}', delivery), (b'{"n": 1}', delivery), (b'{"n": 2}', next_delivery)):
        headers = {
            "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
            "X-GitHub-Delivery": delivery_id,
        }
        status, reply, _ = await post(session, url, body, headers)
        replies.append((status, reply["event_id"], reply["duplicate"]))
    assert replies == [(202, delivery, False), (202, delivery, True), (202, next_delivery, False)]
    assert await handle == ({"n": 1}, {"n": 2})
    assert await rows("SELECT event_id, source FROM inbox_events ORDER BY sent_at") == [
        (delivery, "http:github"),
        (next_delivery, "http:github"),
    ]
    body = b"{}"
    status, reply, _ = await post(
        session,
        url,
        body,
        {"X-Hub-Signature-256": github_signature(GITHUB_SECRET, body), "X-GitHub-Delivery": "not a guid"},
    )
    assert (status, reply["error"]) == (400, "invalid_idempotency_key")
    assert reply["message"] == (
        "The X-GitHub-Delivery header must be 1 to 200 printable ASCII characters without spaces, got "
        "'not a guid'. Nothing was stored."
    )


async def test_githubs_test_vector_passes_verification_before_the_body_is_parsed(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(http_wait("hello"), workflow_id="vector")
    server = await serve_events_async(verify={"hello": workflow.GitHubSignature(secret=GITHUB_SECRET)})
    url = server.event_url("vector", "hello")
    # "Hello, World!" is no JSON: verified, it gets JSON's refusal, not the signature's.
    status, reply, _ = await post(session, url, GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_SIGNATURE})
    assert (status, reply["error"]) == (400, "malformed_json")
    status, reply, _ = await post(
        session, url, GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_SIGNATURE[:-1] + "8"}
    )
    assert (status, reply["error"]) == (401, "bad_signature")
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_stripe_signed_event_with_two_v1_values_during_secret_rotation_is_stored(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("payment"), workflow_id="order-17")
    server = await serve_events_async(verify={"payment": workflow.StripeSignature(secret=STRIPE_SECRET)})
    header = stripe_signature(now(aruntime), STRIPE_BODY, "whsec_the_old_secret", STRIPE_SECRET)
    status, reply, _ = await post(
        session, server.event_url("order-17", "payment"), STRIPE_BODY, {"Stripe-Signature": header}
    )
    assert (status, reply["duplicate"]) == (202, False)
    assert await handle == json.loads(STRIPE_BODY)
    assert await rows("SELECT source FROM inbox_events") == [("http:stripe",)]


def _stripe_cases() -> list[object]:
    other = "whsec_not_the_endpoints_secret"
    return [
        pytest.param(
            lambda t: {"Stripe-Signature": stripe_signature(t - 301, STRIPE_BODY, STRIPE_SECRET)},
            STRIPE_BODY,
            "timestamp_out_of_tolerance",
            r"^The `Stripe-Signature` timestamp t=\d+ is 301 s old; this server accepts at most 300 s either "
            r"way \(the rule's `tolerance_seconds`\), so a replayed request cannot pass\. Check the sender's "
            r"and this machine's clocks\. Nothing was stored\.$",
            id="expired",
        ),
        pytest.param(
            lambda t: {"Stripe-Signature": stripe_signature(t + 3600, STRIPE_BODY, STRIPE_SECRET)},
            STRIPE_BODY,
            "timestamp_out_of_tolerance",
            r"^The `Stripe-Signature` timestamp t=\d+ is 3600 s in the future; ",
            id="future",
        ),
        pytest.param(
            lambda t: {},
            STRIPE_BODY,
            "missing_signature",
            r"^Event key 'payment' takes only requests signed by 'stripe': send the `Stripe-Signature` "
            r"header \(`t=<unix time>,v1=<hex HMAC-SHA256 of \"\{t\}\.\{body\}\">`\)\. Nothing was stored\.$",
            id="missing-header",
        ),
        pytest.param(
            lambda t: {"Stripe-Signature": stripe_signature(t, STRIPE_BODY, other)},
            STRIPE_BODY,
            "bad_signature",
            r"^The `Stripe-Signature` signature does not match the body for 'stripe': check the webhook "
            r"secret on both sides, and that the body is sent byte for byte as it was signed\. Nothing was "
            r"stored\.$",
            id="wrong-secret",
        ),
        pytest.param(
            # Signed over the body as sent by Stripe, posted re-serialized: the same JSON,
            # other bytes. The check is on the raw bytes, so it fails.
            lambda t: {"Stripe-Signature": stripe_signature(t, STRIPE_BODY, STRIPE_SECRET)},
            json.dumps(json.loads(STRIPE_BODY), separators=(",", ":")).encode(),
            "bad_signature",
            r"does not match the body for 'stripe'",
            id="same-json-other-bytes",
        ),
        pytest.param(
            lambda t: {"Stripe-Signature": f"v1={'0' * 64}"},
            STRIPE_BODY,
            "bad_signature",
            r"^The `Stripe-Signature` header is not `t=<unix time>,v1=<hex .*>` \(it must have one 't=' "
            r"item, found 0\)\. Nothing was stored\.$",
            id="no-timestamp",
        ),
        pytest.param(
            lambda t: [
                ("Stripe-Signature", stripe_signature(t, STRIPE_BODY, STRIPE_SECRET)),
                ("Stripe-Signature", stripe_signature(t, STRIPE_BODY, other)),
            ],
            STRIPE_BODY,
            "bad_signature",
            r"^The `Stripe-Signature` header was sent 2 times; send it once\. Nothing was stored\.$",
            id="header-twice",
        ),
    ]


@pytest.mark.parametrize(("headers", "body", "error", "message"), _stripe_cases())
async def test_stripe_request_failing_verification_gets_401_and_stores_nothing(
    aruntime: evkit.Runtime,
    session: aiohttp.ClientSession,
    headers: object,
    body: bytes,
    error: str,
    message: str,
) -> None:
    assert callable(headers)
    workflow.run_async(http_wait("payment"), workflow_id="order-18")
    server = await serve_events_async(verify={"payment": workflow.StripeSignature(secret=STRIPE_SECRET)})
    status, reply, reply_headers = await post(
        session, server.event_url("order-18", "payment"), body, headers(now(aruntime))
    )
    assert status == 401
    assert reply_headers["WWW-Authenticate"] == 'Signature header="Stripe-Signature"'
    assert reply["error"] == error
    assert isinstance(reply["message"], str)
    assert re.search(message, reply["message"]), reply["message"]
    assert STRIPE_SECRET not in reply["message"]
    assert await rows("SELECT count(*) FROM inbox_events") == [(0,)]


async def test_generic_hmac_header_in_base64_is_verified_and_names_its_sender(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    handle = workflow.run_async(http_wait("orders/create"), workflow_id="shop")
    rule = workflow.HMACSignature(
        secret="shpss_shared", header="X-Shopify-Hmac-Sha256", encoding="base64", name="shopify"
    )
    server = await serve_events_async(verify={"orders/create": rule})
    body = b'{"id": 820982911946154508, "email": "jon@example.com"}'
    signature = base64.b64encode(hmac.new(b"shpss_shared", body, hashlib.sha256).digest()).decode()
    url = server.event_url("shop", "orders/create")
    status, reply, _ = await post(session, url, body, {"X-Shopify-Hmac-Sha256": signature})
    assert status == 202, reply
    assert await handle == json.loads(body)
    assert await rows("SELECT key, source FROM inbox_events") == [("orders/create", "http:shopify")]


async def test_keys_without_a_rule_take_unsigned_requests_and_signed_keys_need_no_token(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession
) -> None:
    workflow.run_async(collect.step(http_wait("push"), http_wait("note")), workflow_id="mixed")
    token = "bearer-token-for-the-rest"
    server = await serve_events_async(
        token=token, verify={"push": workflow.GitHubSignature(secret=GITHUB_SECRET)}
    )
    body = b'{"ref": "refs/heads/main"}'
    # GitHub cannot send a bearer token: the signature is the key's authentication.
    signed = await post(
        session,
        server.event_url("mixed", "push"),
        body,
        {"X-Hub-Signature-256": github_signature(GITHUB_SECRET, body)},
    )
    # A token does not stand in for a signature.
    token_only = await post(
        session, server.event_url("mixed", "push"), body, {"Authorization": f"Bearer {token}"}
    )
    unsigned_without_token = await post(session, server.event_url("mixed", "note"), b'"hi"')
    unsigned_with_token = await post(
        session, server.event_url("mixed", "note"), b'"hi"', {"Authorization": f"Bearer {token}"}
    )
    assert signed[0] == 202
    assert (token_only[0], token_only[1]["error"]) == (401, "missing_signature")
    assert (unsigned_without_token[0], unsigned_without_token[1]["error"]) == (401, "missing_token")
    assert unsigned_with_token[0] == 202
    assert await rows("SELECT key, source FROM inbox_events ORDER BY key") == [
        ("note", "http"),
        ("push", "http:github"),
    ]


async def test_secrets_never_reach_the_logs_or_the_servers_repr(
    aruntime: evkit.Runtime, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    workflow.run_async(http_wait("payment"), workflow_id="quiet")
    caplog.set_level(logging.DEBUG)
    rule = workflow.StripeSignature(secret=STRIPE_SECRET)
    server = await serve_events_async(verify={"payment": rule})
    url = server.event_url("quiet", "payment")
    t = now(aruntime)
    wrong = await post(
        session, url, STRIPE_BODY, {"Stripe-Signature": stripe_signature(t, STRIPE_BODY, "whsec_x")}
    )
    right = await post(
        session, url, STRIPE_BODY, {"Stripe-Signature": stripe_signature(t, STRIPE_BODY, STRIPE_SECRET)}
    )
    assert (wrong[0], right[0]) == (401, 202)
    assert "refused POST /events/quiet/payment: bad_signature (signature rule 'stripe')" in caplog.text
    assert STRIPE_SECRET not in caplog.text
    assert STRIPE_SECRET not in repr(server.verify)
    assert (
        repr(server.verify["payment"])
        == "StripeSignature(secret=***, tolerance_seconds=300.0, name='stripe')"
    )


async def test_serve_events_with_the_same_rules_returns_the_running_server(aruntime: evkit.Runtime) -> None:
    rules = {"*": workflow.GitHubSignature(secret=GITHUB_SECRET)}
    server = await serve_events_async(verify=rules)
    same = {"*": workflow.GitHubSignature(secret=GITHUB_SECRET)}
    assert await serve_events_async(verify=same) is server
    with pytest.raises(evkit.RunStateError, match=r"^An event server already runs at .* with other options"):
        await serve_events_async(verify={"*": workflow.GitHubSignature(secret="rotated")})


async def test_serve_events_without_options_returns_the_server_started_with_rules_or_a_token(
    aruntime: evkit.Runtime,
) -> None:
    # As docs/sources.md says: `workflow.serve_events().url` tells you where the server is.
    server = await serve_events_async(verify={"*": workflow.GitHubSignature(secret=GITHUB_SECRET)})
    assert await serve_events_async() is server
    await server.aclose()
    with_token = await serve_events_async(token="a-token")
    assert await serve_events_async() is with_token
    assert await serve_events_async(verify={}) is with_token
