"""The `sha256=<hex>` webhook signature (WebSub's `X-Hub-Signature` form) that GitHub
(`X-Hub-Signature-256`) and Jira Cloud admin webhooks (`X-Hub-Signature`) send: HMAC-SHA256 of
the raw body keyed with the webhook's secret. One implementation, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac


def hub_signature(body: bytes, secret: str) -> str:
    """The header value for `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hub_signature_problem(body: bytes, secret: str, header: str | None, *, header_name: str, vendor: str) -> str | None:
    """Why `header` (the value of `header_name`) is not a valid signature of `body`, or None
    when it is. The reason names the header and the vendor, never the secret."""
    if not header:
        return f"no {header_name} header (is a secret set on the {vendor} webhook?)"
    method, sep, digest = header.strip().partition("=")
    if not sep or not digest:
        return f"malformed {header_name} header"
    if method.strip().lower() != "sha256":
        return f"unsupported {header_name} method {method[:16]!r} (expected sha256)"
    expected = hub_signature(body, secret).partition("=")[2]
    if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
        return f"{header_name} does not match the body (wrong webhook_secret?)"
    return None
