"""Zendesk's webhook signature, documented at
https://developer.zendesk.com/documentation/webhooks/verifying/ :
`X-Zendesk-Webhook-Signature` is `base64(HMACSHA256(TIMESTAMP + BODY))`, keyed with the webhook's
signing secret, where TIMESTAMP is the `X-Zendesk-Webhook-Signature-Timestamp` header as sent
(`2021-07-25T10:00:00Z`) and BODY the raw body (empty when there is none). Timestamp first, then
body: the order of that page and of every implementation found (one copy of a sibling page writes
the reverse; see ../shared/specs/zendesk/README.md). The timestamp is also checked against the
clock, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

from connectors.runtime.payloads import iso_time

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Zendesk-Webhook-Signature` Zendesk sends for `body` signed at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_problem(
    secret: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_s: float,
    now: Callable[[], float] = time.time,
) -> str | None:
    """Why the request is not a genuine, fresh Zendesk delivery, or None when it is. Names the
    header, never the secret; compares in constant time."""
    if not signature:
        return f"no {SIGNATURE_HEADER} header (is the webhook's signing secret the one configured?)"
    if not timestamp:
        return f"no {TIMESTAMP_HEADER} header"
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return f"malformed {SIGNATURE_HEADER} header (not base64)"
    expected = base64.b64decode(zendesk_signature(secret, timestamp, body))
    if not hmac.compare_digest(expected, given):
        return f"{SIGNATURE_HEADER} does not match the body (wrong webhook_secret?)"
    signed_at = iso_time(timestamp.strip())
    if signed_at is None:
        return f"malformed {TIMESTAMP_HEADER} header (not an ISO 8601 time)"
    skew = abs(now() - signed_at.timestamp())
    if skew > tolerance_s:
        return f"{TIMESTAMP_HEADER} is {skew:.0f}s away from now (over {tolerance_s:g}s: a replay, or a wrong clock)"
    return None
