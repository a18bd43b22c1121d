"""What an event's HTTP body may be: a JSON document, finite numbers, bounded nesting.

Pure rules for the HTTP inbox (``evkit.listeners.http``): no HTTP, no store. Each refusal
is a sentence for the client's 400 reply.
"""

from __future__ import annotations

import json
import math

MAX_IDEMPOTENCY_KEY_CHARS = 200
MAX_JSON_DEPTH = 100
"""How deeply arrays and objects may nest in an event's body (deeper ones get 400)."""


def valid_idempotency_key(value: str) -> bool:
    """Whether an ``Idempotency-Key`` header is usable: 1-200 printable ASCII characters."""
    return 0 < len(value) <= MAX_IDEMPOTENCY_KEY_CHARS and all(33 <= ord(c) <= 126 for c in value)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # JSON has no infinity; Python would read 1e400 as inf, which the store and SQL
        # would then show as a number nobody sent.
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float (JSON has no Infinity)")
    return value


_TOO_DEEP = (
    f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; events may nest "
    f"at most {MAX_JSON_DEPTH} levels. Send a flatter document; nothing was stored."
)


def _too_deep(value: object) -> bool:
    """True if arrays and objects nest deeper than ``MAX_JSON_DEPTH`` (level by level, no recursion)."""
    level = [value] if isinstance(value, (list, dict)) else []
    for _ in range(MAX_JSON_DEPTH):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, (list, dict))
        ]
        if not level:
            return False
    return True


def parse_json(body: bytes) -> tuple[object, str | None]:
    """The body's JSON document, or ``None`` and the reason (for a 400) it cannot be stored."""
    if not body.strip():
        return (
            None,
            "The body is empty: send a JSON document (for no payload, send `null`). Nothing was stored.",
        )
    try:
        payload = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        return None, _TOO_DEEP
    except json.JSONDecodeError as exc:
        return None, (
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}. "
            "Send a JSON document; nothing was stored."
        )
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"The body is not valid JSON: {exc}. Send a UTF-8 JSON document; nothing was stored."
    if _too_deep(payload):
        return None, _TOO_DEEP
    return payload, None
