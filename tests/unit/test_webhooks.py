"""Webhook signature schemes on their own (no server, no loop): GitHub's documented test
vector, Stripe's ``t=...,v1=...`` header with tolerance and rotation, the generic HMAC
header, option validation, and that no secret shows in a repr or a message."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from evkit import workflow
from evkit.listeners.http import check_server_options
from evkit.listeners.webhooks import (
    GitHubSignature,
    HMACSignature,
    SignatureRefusal,
    StripeSignature,
    check_verify_option,
    rule_for,
)

# GitHub's "Validating webhook deliveries" test vector.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

STRIPE_SECRET = "whsec_test_0123456789abcdef"
NOW = 1_700_000_000


def stripe_v1(secret: str, timestamp: int, body: bytes) -> str:
    """A v1 signature as Stripe documents it: HMAC-SHA256 of "{t}.{body}", hex."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_github_signature_accepts_githubs_documented_test_vector() -> None:
    rule = GitHubSignature(secret=GITHUB_SECRET)
    assert rule.header == "X-Hub-Signature-256"
    assert rule.check(GITHUB_SIGNATURE, GITHUB_PAYLOAD, now=NOW) is None


@pytest.mark.parametrize(
    ("secret", "value", "body", "code", "message"),
    [
        (
            "another secret",
            GITHUB_SIGNATURE,
            GITHUB_PAYLOAD,
            "bad_signature",
            r"^The `X-Hub-Signature-256` signature does not match the body for 'github': check the "
            r"webhook secret on both sides, and that the body is sent byte for byte as it was signed\. "
            r"Nothing was stored\.$",
        ),
        (GITHUB_SECRET, GITHUB_SIGNATURE, b"Hello, World!\n", "bad_signature", r"does not match the body"),
        (
            GITHUB_SECRET,
            GITHUB_SIGNATURE.replace("sha256=", "sha1="),
            GITHUB_PAYLOAD,
            "bad_signature",
            r"^The `X-Hub-Signature-256` header is not `sha256=<hex HMAC-SHA256 of the body>` \(it must "
            r"start with 'sha256='\)\. Nothing was stored\.$",
        ),
        (GITHUB_SECRET, "sha256=abc", GITHUB_PAYLOAD, "bad_signature", r"followed by 64 hex digits"),
        (GITHUB_SECRET, "sha256=" + "zz" * 32, GITHUB_PAYLOAD, "bad_signature", r"followed by 64 hex digits"),
    ],
)
def test_github_signature_refuses_a_wrong_secret_body_or_header(
    secret: str, value: str, body: bytes, code: str, message: str
) -> None:
    refusal = GitHubSignature(secret=secret).check(value, body, now=NOW)
    assert refusal is not None
    assert refusal.code == code
    assert re.search(message, refusal.message), refusal.message


def test_stripe_signature_accepts_a_header_built_as_stripe_documents() -> None:
    body = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'
    test_mode_v0 = "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"  # not checked
    header = f"t={NOW},v1={stripe_v1(STRIPE_SECRET, NOW, body)},v0={test_mode_v0}"
    assert StripeSignature(secret=STRIPE_SECRET).check(header, body, now=NOW) is None


def test_stripe_signature_passes_if_any_v1_matches_during_secret_rotation() -> None:
    body = b'{"id": "evt_2"}'
    rotated = f"t={NOW},v1={stripe_v1('whsec_old', NOW, body)},v1={stripe_v1(STRIPE_SECRET, NOW, body)}"
    assert StripeSignature(secret=STRIPE_SECRET).check(rotated, body, now=NOW) is None
    assert StripeSignature(secret="whsec_old").check(rotated, body, now=NOW) is None
    refusal = StripeSignature(secret="whsec_third").check(rotated, body, now=NOW)
    assert refusal is not None
    assert refusal.code == "bad_signature"


@pytest.mark.parametrize(
    ("now", "passes", "message"),
    [
        (NOW + 300, True, None),
        (NOW - 300, True, None),
        (
            NOW + 301,
            False,
            r"^The `Stripe-Signature` timestamp t=1700000000 is 301 s old; this server accepts at most "
            r"300 s either way \(the rule's `tolerance_seconds`\), so a replayed request cannot pass\. "
            r"Check the sender's and this machine's clocks\. Nothing was stored\.$",
        ),
        (NOW - 301, False, r"^The `Stripe-Signature` timestamp t=1700000000 is 301 s in the future; "),
    ],
)
def test_stripe_signature_timestamp_must_be_within_tolerance_either_way(
    now: int, passes: bool, message: str | None
) -> None:
    body = b"{}"
    header = f"t={NOW},v1={stripe_v1(STRIPE_SECRET, NOW, body)}"
    refusal = StripeSignature(secret=STRIPE_SECRET).check(header, body, now=now)
    if passes:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.code == "timestamp_out_of_tolerance"
        assert message is not None
        assert re.search(message, refusal.message), refusal.message


def test_stripe_timestamp_is_checked_only_once_the_signature_matched() -> None:
    # A forged request learns that its signature is wrong, not what time the server keeps.
    header = f"t={NOW - 10_000},v1={stripe_v1('whsec_forger', NOW - 10_000, b'{}')}"
    refusal = StripeSignature(secret=STRIPE_SECRET).check(header, b"{}", now=NOW)
    assert refusal is not None
    assert refusal.code == "bad_signature"


def test_stripe_signature_tolerance_is_configurable() -> None:
    header = f"t={NOW},v1={stripe_v1(STRIPE_SECRET, NOW, b'1')}"
    assert StripeSignature(secret=STRIPE_SECRET, tolerance_seconds=30).check(header, b"1", now=NOW + 31) == (
        SignatureRefusal(
            code="timestamp_out_of_tolerance",
            message="The `Stripe-Signature` timestamp t=1700000000 is 31 s old; this server accepts at most "
            "30 s either way (the rule's `tolerance_seconds`), so a replayed request cannot pass. Check the "
            "sender's and this machine's clocks. Nothing was stored.",
        )
    )


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("v1=" + "00" * 32, "it must have one 't=' item, found 0"),
        (f"t={NOW},t={NOW},v1=" + "00" * 32, "it must have one 't=' item, found 2"),
        ("t=soon,v1=" + "00" * 32, "'t=' must be a unix time in whole seconds"),
        ("t=-5,v1=" + "00" * 32, "'t=' must be a unix time in whole seconds"),
        ("t=" + "9" * 5000 + ",v1=" + "00" * 32, "'t=' must be a unix time in whole seconds"),
        (f"t={NOW},v0=" + "00" * 32, "it has no 'v1=' signature"),
    ],
)
def test_stripe_signature_header_that_cannot_be_read_is_a_bad_signature(header: str, detail: str) -> None:
    refusal = StripeSignature(secret=STRIPE_SECRET).check(header, b"{}", now=NOW)
    assert refusal == SignatureRefusal(
        code="bad_signature",
        message='The `Stripe-Signature` header is not `t=<unix time>,v1=<hex HMAC-SHA256 of "{t}.{body}">` '
        f"({detail}). Nothing was stored.",
    )


@pytest.mark.parametrize(
    ("encoding", "prefix", "encode"),
    [
        ("hex", "", lambda digest: digest.hex()),
        ("hex", "sha256=", lambda digest: digest.hex().upper()),
        ("base64", "", lambda digest: base64.b64encode(digest).decode()),
    ],
)
def test_hmac_signature_reads_hex_or_base64_after_an_optional_prefix(
    encoding: str, prefix: str, encode: object
) -> None:
    assert callable(encode)
    body = b'{"order": 17}'
    digest = hmac.new(b"shared", body, hashlib.sha256).digest()
    rule = HMACSignature(secret=b"shared", header="X-Signature", encoding=encoding, prefix=prefix)  # type: ignore[arg-type]
    assert rule.check(prefix + encode(digest), body, now=NOW) is None
    assert rule.check(prefix + encode(hmac.new(b"other", body, hashlib.sha256).digest()), body, now=NOW) == (
        SignatureRefusal(
            code="bad_signature",
            message="The `X-Signature` signature does not match the body for 'hmac': check the webhook "
            "secret on both sides, and that the body is sent byte for byte as it was signed. Nothing was "
            "stored.",
        )
    )


def test_hmac_signature_refuses_a_value_without_its_prefix_or_of_the_wrong_encoding() -> None:
    rule = HMACSignature(secret="shared", header="X-Signature", encoding="base64", prefix="v1,")
    digest = base64.b64encode(hmac.new(b"shared", b"1", hashlib.sha256).digest()).decode()
    missing_prefix = rule.check(digest, b"1", now=NOW)
    assert missing_prefix is not None
    assert missing_prefix.message == (
        "The `X-Signature` header is not `v1,<base64 HMAC-SHA256 of the body>` (it must start with 'v1,'). "
        "Nothing was stored."
    )
    for wrong in ("v1,not base64!", "v1," + base64.b64encode(b"short").decode(), "v1,é"):
        refusal = rule.check(wrong, b"1", now=NOW)
        assert refusal is not None
        assert refusal.message.endswith(
            "(the signature must be a base64 SHA-256 digest). Nothing was stored."
        )


def test_missing_header_refusal_names_the_key_the_header_and_its_form() -> None:
    assert GitHubSignature(secret="s").missing("push") == SignatureRefusal(
        code="missing_signature",
        message="Event key 'push' takes only requests signed by 'github': send the `X-Hub-Signature-256` "
        "header (`sha256=<hex HMAC-SHA256 of the body>`). Nothing was stored.",
    )


def test_reprs_show_no_secret() -> None:
    secret = "whsec_do-not-print-me"
    rules = [
        GitHubSignature(secret=secret),
        StripeSignature(secret=secret.encode()),
        HMACSignature(secret=secret, header="X-Sig", name="acme"),
    ]
    assert [repr(rule) for rule in rules] == [
        "GitHubSignature(secret=***, name='github')",
        "StripeSignature(secret=***, tolerance_seconds=300.0, name='stripe')",
        "HMACSignature(secret=***, header='X-Sig', encoding='hex', prefix='', name='acme', "
        "event_id_header=None)",
    ]
    assert secret not in repr({"*": rules[0], "pay": rules[1]})
    assert secret not in str(rules[2])


def test_refusal_messages_never_show_the_secret_or_the_expected_signature() -> None:
    secret = "whsec_do-not-print-me"
    body = b"{}"
    expected = stripe_v1(secret, NOW, body)
    rule = StripeSignature(secret=secret)
    refusals = [
        rule.check(f"t={NOW},v1={'0' * 64}", body, now=NOW),
        rule.check(f"t={NOW}", body, now=NOW),
        rule.check(f"t={NOW},v1={expected}", body, now=NOW + 10_000),
        rule.missing("k"),
    ]
    for refusal in refusals:
        assert refusal is not None
        assert secret not in refusal.message
        assert expected not in refusal.message


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: GitHubSignature(secret=""),
            ValueError,
            r"^GitHubSignature: `secret` is empty; pass the webhook",
        ),
        (
            lambda: StripeSignature(secret=None),  # type: ignore[arg-type]
            TypeError,
            r"^StripeSignature: `secret` must be a str or bytes, got a NoneType\.$",
        ),
        (
            lambda: StripeSignature(secret="s", tolerance_seconds=0),
            ValueError,
            r"^StripeSignature: `tolerance_seconds` must be a positive finite number of seconds, got 0\.$",
        ),
        (lambda: StripeSignature(secret="s", tolerance_seconds=float("inf")), ValueError, r"got inf\.$"),
        (
            lambda: HMACSignature(secret="s", header="X Sig"),
            ValueError,
            r"^HMACSignature: `header` must be an HTTP header name such as 'X-Signature', got 'X Sig'\.$",
        ),
        (
            lambda: HMACSignature(secret="s", header="X-Sig", event_id_header="Webhook Id"),
            ValueError,
            r"^HMACSignature: `event_id_header` must be an HTTP header name such as 'X-Webhook-Id', "
            r"got 'Webhook Id'\.$",
        ),
        (
            lambda: HMACSignature(secret="s", header="X-Sig", encoding="base32"),  # type: ignore[arg-type]
            ValueError,
            r"^HMACSignature: `encoding` must be 'hex' or 'base64', got 'base32'\.$",
        ),
        (
            lambda: GitHubSignature(secret="s", name="my github"),
            ValueError,
            r"^GitHubSignature: `name` must be 1 to 50 letters, digits, '_', '\.' or '-' \(starting with a "
            r"letter or digit\), got 'my github'; it becomes the event's source 'http:<name>'\.$",
        ),
    ],
)
def test_bad_rule_options_are_refused_when_the_rule_is_made(make: object, error: type, message: str) -> None:
    assert callable(make)
    with pytest.raises(error, match=message):
        make()


def test_verify_option_maps_event_keys_or_star_to_rules() -> None:
    github = GitHubSignature(secret="s")
    stripe = StripeSignature(secret="t")
    rules = check_verify_option({"push": github, "*": stripe})
    assert rule_for(rules, "push") is github
    assert rule_for(rules, "anything else") is stripe
    assert rule_for(check_verify_option({"push": github}), "other") is None
    with pytest.raises(TypeError, match=r"^`verify` must be a dict of event key \(or '\*' for every key\)"):
        check_verify_option([github])
    with pytest.raises(TypeError, match=r"^`verify\['push'\]` must be a workflow\.GitHubSignature, "):
        check_verify_option({"push": "secret"})
    with pytest.raises(ValueError, match=r"^`verify` keys must be event keys of 1 to 200 characters"):
        check_verify_option({"": github})


def test_a_star_rule_lets_the_server_bind_beyond_loopback_without_a_token() -> None:
    rules = {"*": workflow.GitHubSignature(secret="s")}
    assert check_server_options("0.0.0.0", 0, None, 1024, verify=rules) == rules
    with pytest.raises(
        ValueError, match=r"^Binding the event server to '0\.0\.0\.0' .* a `verify=\{'\*': \.\.\.\}` rule"
    ):
        check_server_options("0.0.0.0", 0, None, 1024, verify={"push": rules["*"]})
