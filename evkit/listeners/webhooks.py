"""Signed webhooks: how the HTTP inbox tells that a POST comes from the sender it claims.

It owns the signature schemes (GitHub's, Stripe's, a generic HMAC-SHA256 header) and
checks one request's signature header and raw body bytes against them, in constant time.
It knows nothing of HTTP servers, runs or the store, and it must never put a secret into a
repr, a message or a log line (nor a signature: an error that showed the expected one
would sign anything for anyone).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, final

from evkit.model import MAX_EVENT_KEY_CHARS

ALL_KEYS = "*"
"""The ``verify`` key of a rule for every event key that has no rule of its own."""
DEFAULT_STRIPE_TOLERANCE_SECONDS = 300.0
"""How far a ``Stripe-Signature`` timestamp may be from now (Stripe's libraries use 300 s)."""

# A rule's name becomes the event's source (`http:<name>`): short, and safe in SQL output.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")
# An HTTP header name (RFC 9110 "token"), so a rule can never name a header no client can send.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
_SHA256_HEX_CHARS = 64
# A unix time in seconds has 10 digits until the year 2286; more is no timestamp.
_MAX_TIMESTAMP_DIGITS = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureRefusal:
    """Why a request's signature was refused: the JSON ``error`` code and its message."""

    code: Literal["missing_signature", "bad_signature", "timestamp_out_of_tolerance"]
    message: str


class WebhookSignature(ABC):
    """A way a webhook sender signs its requests; the values of ``serve_events(verify=...)``.

    Use one of :class:`GitHubSignature`, :class:`StripeSignature` or
    :class:`HMACSignature`. Each names the header it reads (``header``) and the sender
    (``name``), which is stored as the event's source (``http:<name>``).
    """

    __slots__ = ()

    name: str
    """Who signs: the event's source becomes ``http:<name>``."""
    header: str
    """The request header that carries the signature."""
    event_id_header: str | None
    """A header with the sender's id of the event, used as its ``event_id`` when the request
    has no ``Idempotency-Key``: a redelivery is then stored once (``None``: no such header)."""

    @abstractmethod
    def check(self, value: str, body: bytes, *, now: float) -> SignatureRefusal | None:
        """Check the signature header ``value`` against the raw ``body``; ``None`` if it is right.

        Args:
            value: The signature header as received.
            body: The request body exactly as received (before any JSON parsing).
            now: The current time, in seconds since the epoch (the engine's clock).
        """

    def missing(self, key: str) -> SignatureRefusal:
        """The refusal of a request to event ``key`` without the signature header."""
        return SignatureRefusal(
            code="missing_signature",
            message=f"Event key {key!r} takes only requests signed by {self.name!r}: send the "
            f"`{self.header}` header ({self._header_form()}). Nothing was stored.",
        )

    @abstractmethod
    def _header_form(self) -> str:
        """How the header's value looks, for messages."""

    def _mismatch(self) -> SignatureRefusal:
        return SignatureRefusal(
            code="bad_signature",
            message=f"The `{self.header}` signature does not match the body for {self.name!r}: "
            "check the webhook secret on both sides, and that the body is sent byte for byte as "
            "it was signed. Nothing was stored.",
        )

    def _malformed(self, detail: str) -> SignatureRefusal:
        return SignatureRefusal(
            code="bad_signature",
            message=f"The `{self.header}` header is not {self._header_form()} ({detail}). "
            "Nothing was stored.",
        )


def _secret_bytes(secret: object, owner: str) -> bytes:
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, bytes):
        key = secret
    else:
        raise TypeError(f"{owner}: `secret` must be a str or bytes, got a {type(secret).__name__}.")
    if not key.strip():
        raise ValueError(f"{owner}: `secret` is empty; pass the webhook secret the sender signs with.")
    return key


def _check_name(name: object, owner: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{owner}: `name` must be 1 to 50 letters, digits, '_', '.' or '-' (starting with a "
            f"letter or digit), got {name!r}; it becomes the event's source 'http:<name>'."
        )


def _hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _from_hex(text: str) -> bytes | None:
    """The bytes of a SHA-256 hex digest, or ``None`` if ``text`` is not one."""
    if len(text) != _SHA256_HEX_CHARS or not text.isascii():
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class GitHubSignature(WebhookSignature):
    """GitHub's webhook signature: ``X-Hub-Signature-256: sha256=<hex>``.

    The hex is the HMAC-SHA256 of the raw body with the webhook's secret (GitHub's
    "Validating webhook deliveries"). The delivery's ``X-GitHub-Delivery`` id becomes the
    event's ``event_id`` (unless the request has an ``Idempotency-Key``): a redelivery, or
    a replay of a captured request, is stored once. ``repr`` shows ``secret=***``.

    Args:
        secret: The webhook's secret, as entered in GitHub's settings.
        name: The sender, stored as the event's source ``http:<name>`` (default ``github``).

    Raises:
        TypeError: ``secret`` is not a str or bytes.
        ValueError: ``secret`` is empty, or ``name`` is not 1 to 50 letters, digits,
            ``_``, ``.`` or ``-``.
    """

    secret: str | bytes = field(repr=False)
    name: str = "github"
    header: str = field(default="X-Hub-Signature-256", init=False)
    event_id_header: str | None = field(default="X-GitHub-Delivery", init=False)
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", _secret_bytes(self.secret, "GitHubSignature"))
        _check_name(self.name, "GitHubSignature")

    def __repr__(self) -> str:
        return f"GitHubSignature(secret=***, name={self.name!r})"

    def check(self, value: str, body: bytes, *, now: float) -> SignatureRefusal | None:
        """Check ``sha256=<hex>`` against the HMAC-SHA256 of ``body`` (``now`` is not used)."""
        scheme, _, hex_digest = value.strip().partition("=")
        if scheme != "sha256":
            return self._malformed("it must start with 'sha256='")
        received = _from_hex(hex_digest)
        if received is None:
            return self._malformed(f"'sha256=' must be followed by {_SHA256_HEX_CHARS} hex digits")
        if not hmac.compare_digest(received, _hmac_sha256(self._key, body)):
            return self._mismatch()
        return None

    def _header_form(self) -> str:
        return "`sha256=<hex HMAC-SHA256 of the body>`"


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class StripeSignature(WebhookSignature):
    """Stripe's webhook signature: ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``.

    Each ``v1`` is the HMAC-SHA256 of ``"{t}.{raw body}"`` with the endpoint's signing
    secret (``whsec_...``); any one matching passes, as Stripe sends one per secret while
    you roll it. A request whose ``t`` is more than ``tolerance_seconds`` from now (in the
    past: a replay; or in the future) is refused even if it is signed. ``repr`` shows
    ``secret=***``.

    Args:
        secret: The endpoint's signing secret (``whsec_...``).
        tolerance_seconds: How far ``t`` may be from the engine clock's now (default 300 s,
            as in Stripe's libraries).
        name: The sender, stored as the event's source ``http:<name>`` (default ``stripe``).

    Raises:
        TypeError: ``secret`` is not a str or bytes.
        ValueError: ``secret`` is empty, ``tolerance_seconds`` is not a positive finite
            number, or ``name`` is not 1 to 50 letters, digits, ``_``, ``.`` or ``-``.
    """

    secret: str | bytes = field(repr=False)
    tolerance_seconds: float = DEFAULT_STRIPE_TOLERANCE_SECONDS
    name: str = "stripe"
    header: str = field(default="Stripe-Signature", init=False)
    # Stripe's event id is in the body, not a header; its timestamp bounds replays instead.
    event_id_header: str | None = field(default=None, init=False)
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", _secret_bytes(self.secret, "StripeSignature"))
        tolerance: object = self.tolerance_seconds  # checked: callers need not use mypy
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not 0 < tolerance < math.inf
        ):
            raise ValueError(
                f"StripeSignature: `tolerance_seconds` must be a positive finite number of seconds, "
                f"got {tolerance!r}."
            )
        _check_name(self.name, "StripeSignature")

    def __repr__(self) -> str:
        return (
            f"StripeSignature(secret=***, tolerance_seconds={self.tolerance_seconds!r}, name={self.name!r})"
        )

    def check(self, value: str, body: bytes, *, now: float) -> SignatureRefusal | None:
        """Check the ``v1`` signatures of ``"{t}.{body}"``, then that ``t`` is within tolerance."""
        timestamps: list[str] = []
        signatures: list[str] = []
        for item in value.split(","):
            scheme, _, text = item.strip().partition("=")
            if scheme == "t":
                timestamps.append(text)
            elif scheme == "v1":
                signatures.append(text)
            # Other schemes (v0: Stripe's test-mode scheme) are not signatures we check.
        if len(timestamps) != 1:
            return self._malformed(f"it must have one 't=' item, found {len(timestamps)}")
        timestamp = timestamps[0]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
            return self._malformed("'t=' must be a unix time in whole seconds")
        if not signatures:
            return self._malformed("it has no 'v1=' signature")
        expected = _hmac_sha256(self._key, timestamp.encode("ascii"), b".", body)
        # Every candidate is compared (no early exit), so the time taken does not tell
        # which one matched.
        matched = False
        for signature in signatures:
            received = _from_hex(signature)
            matched |= received is not None and hmac.compare_digest(received, expected)
        if not matched:
            return self._mismatch()
        # Checked only for a request signed with the secret, as Stripe's libraries do: a
        # replayed request is authentic but too old; a forged one learns nothing here.
        age = now - int(timestamp)
        if abs(age) > self.tolerance_seconds:
            when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
            return SignatureRefusal(
                code="timestamp_out_of_tolerance",
                message=f"The `Stripe-Signature` timestamp t={timestamp} is {when}; this server "
                f"accepts at most {self.tolerance_seconds:g} s either way (the rule's "
                "`tolerance_seconds`), so a replayed request cannot pass. Check the sender's and "
                "this machine's clocks. Nothing was stored.",
            )
        return None

    def _header_form(self) -> str:
        return '`t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{body}">`'


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class HMACSignature(WebhookSignature):
    """A generic HMAC-SHA256 signature of the raw body in a header you name.

    For senders that sign the body alone, e.g. Shopify:
    ``HMACSignature(secret=..., header="X-Shopify-Hmac-Sha256", encoding="base64", name="shopify")``.
    ``repr`` shows ``secret=***``.

    Args:
        secret: The shared secret.
        header: The header that carries the signature.
        encoding: ``"hex"`` (either case) or ``"base64"`` (standard alphabet, padded).
        prefix: Text before the signature in the header, e.g. ``"sha256="`` (default none).
        name: The sender, stored as the event's source ``http:<name>`` (default ``hmac``).
        event_id_header: A header with the sender's id of the event (e.g.
            ``"X-Shopify-Webhook-Id"``), used as its ``event_id`` when the request has no
            ``Idempotency-Key``, so a redelivery is stored once (default none).

    Raises:
        TypeError: ``secret`` is not a str or bytes, or ``prefix`` is not a str.
        ValueError: ``secret`` is empty, ``header`` or ``event_id_header`` is not an HTTP header name,
            ``encoding`` is neither ``"hex"`` nor ``"base64"``, or ``name`` is not 1 to 50
            letters, digits, ``_``, ``.`` or ``-``.
    """

    secret: str | bytes = field(repr=False)
    header: str
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    name: str = "hmac"
    event_id_header: str | None = None
    _key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", _secret_bytes(self.secret, "HMACSignature"))
        headers: list[tuple[str, str, object]] = [("header", "X-Signature", self.header)]
        if self.event_id_header is not None:
            headers.append(("event_id_header", "X-Webhook-Id", self.event_id_header))
        for option, example, header in headers:
            if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
                raise ValueError(
                    f"HMACSignature: `{option}` must be an HTTP header name such as {example!r}, "
                    f"got {header!r}."
                )
        if self.encoding not in ("hex", "base64"):
            raise ValueError(f"HMACSignature: `encoding` must be 'hex' or 'base64', got {self.encoding!r}.")
        if not isinstance(self.prefix, str):
            raise TypeError(f"HMACSignature: `prefix` must be a str, got a {type(self.prefix).__name__}.")
        _check_name(self.name, "HMACSignature")

    def __repr__(self) -> str:
        return (
            f"HMACSignature(secret=***, header={self.header!r}, encoding={self.encoding!r}, "
            f"prefix={self.prefix!r}, name={self.name!r}, event_id_header={self.event_id_header!r})"
        )

    def check(self, value: str, body: bytes, *, now: float) -> SignatureRefusal | None:
        """Check the header's ``prefix`` + encoded HMAC-SHA256 of ``body`` (``now`` is not used)."""
        value = value.strip()
        if not value.startswith(self.prefix):
            return self._malformed(f"it must start with {self.prefix!r}")
        encoded = value[len(self.prefix) :]
        received: bytes | None
        if self.encoding == "hex":
            received = _from_hex(encoded)
        else:
            try:
                received = base64.b64decode(encoded.encode("ascii"), validate=True)
            except (UnicodeEncodeError, binascii.Error):
                received = None
        if received is None or len(received) != hashlib.sha256().digest_size:
            return self._malformed(f"the signature must be a {self.encoding} SHA-256 digest")
        if not hmac.compare_digest(received, _hmac_sha256(self._key, body)):
            return self._mismatch()
        return None

    def _header_form(self) -> str:
        return f"`{self.prefix}<{self.encoding} HMAC-SHA256 of the body>`"


def check_verify_option(verify: object) -> dict[str, WebhookSignature]:
    """Validate ``serve_events(verify=...)``; return it as a new dict.

    Raises:
        TypeError: ``verify`` is not a mapping of str to a ``WebhookSignature``.
        ValueError: A key is empty or longer than an event key may be.
    """
    if not isinstance(verify, Mapping):
        raise TypeError(
            "`verify` must be a dict of event key (or '*' for every key) to a signature rule, e.g. "
            f"verify={{'github': workflow.GitHubSignature(secret=...)}}, got a {type(verify).__name__}."
        )
    rules: dict[str, WebhookSignature] = {}
    for key, rule in verify.items():
        if not isinstance(key, str) or not key or len(key) > MAX_EVENT_KEY_CHARS:
            raise ValueError(
                f"`verify` keys must be event keys of 1 to {MAX_EVENT_KEY_CHARS} characters, or '*' for "
                f"every key, got {key!r}."
            )
        if not isinstance(rule, WebhookSignature):
            raise TypeError(
                f"`verify[{key!r}]` must be a workflow.GitHubSignature, StripeSignature or HMACSignature, "
                f"got a {type(rule).__name__}."
            )
        rules[key] = rule
    return rules


def rule_for(rules: Mapping[str, WebhookSignature], key: str) -> WebhookSignature | None:
    """The rule that applies to event ``key``: its own, else the ``"*"`` rule, else none."""
    rule = rules.get(key)
    return rule if rule is not None else rules.get(ALL_KEYS)
