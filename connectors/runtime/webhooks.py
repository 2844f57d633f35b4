"""The HTTP server of the connector runtime: webhook endpoints, /metrics, /healthz.

Every webhook route goes through one handler, so hostile input gets the same clear answer on
every endpoint, and nothing that will never succeed is answered 5xx (the platform would
redeliver it forever):

| what | answer |
| --- | --- |
| Content-Length over the limit, or a body that grows past it | 413, before reading further |
| a body that does not arrive within the read timeout | 408, and the connection is closed |
| too many requests at once (or too many body bytes buffered) | 503 with Retry-After |
| verification fails (on the raw body, before any parsing) | 401 (or the source's own status, e.g. Matrix's 403) |
| the payload cannot be understood (SkippableError, pydantic ValidationError) | 400 |
| the broker did not acknowledge (PublishError, any RetriableError) | 503 with Retry-After |
| anything else (a bug, a permanent problem in the mapping) | 202; the raw request goes to the dead-letter topic |
| the client went away | nothing to answer: one DEBUG line |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from connectors.base import Publisher, Unauthorized, WebhookRequest, WebhookResponse, WebhookRoute, WebhookSource
from connectors.errors import RetriableError, SkippableError
from connectors.runtime import health
from connectors.runtime.deadletter import send_to_dead_letters, webhook_dead_letter
from connectors.runtime.http_body import BodyTimeout, BodyTooLarge, ClientGone, client_gone, read_body
from connectors.runtime.limits import MAX_WEBHOOK_BODY_BYTES
from connectors.runtime.metrics import WEBHOOK_REQUESTS
from schemas.topics import TopicNames

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]

#: How long a platform should wait before redelivering after a 503.
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class HttpLimits:
    """What one request may take. Memory stays bounded: at most `max_concurrent` requests are
    read at once, and their bodies together hold at most `max_buffered_bytes`."""

    max_body_bytes: int = MAX_WEBHOOK_BODY_BYTES
    read_timeout_s: float = 10.0
    max_concurrent: int = 256
    max_buffered_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class DeadLetters:
    """Where requests that broke a connector go."""

    publisher: Publisher
    topics: TopicNames


def webhook_path(connector: str, route: WebhookRoute | WebhookSource) -> str:
    path = route.path if isinstance(route, WebhookRoute) else route.routes[0].path
    return f"/webhooks/{connector}{path}"


class _Admission:
    """Bounds the requests being read and the body bytes they hold, across every route."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._buffered = 0

    async def enter(self, deadline: float) -> bool:
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            return False
        return True

    def leave(self) -> None:
        self._slots.release()

    def reserve(self, size: int) -> bool:
        if self._buffered + size > self.limits.max_buffered_bytes:
            return False
        self._buffered += size
        return True

    def release(self, size: int) -> None:
        self._buffered -= size


def _error(status: int, message: str, *, retry_after: bool = False, close: bool = False) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    if retry_after:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    if close:
        response.force_close()  # a client that stalls is not kept around for the lingering read
    return response


def _answer(response: WebhookResponse) -> web.Response:
    if response.text is not None:
        return web.Response(status=response.status, text=response.text)
    if response.json is not None:
        return web.json_response(response.json, status=response.status)
    return web.Response(status=response.status)


def _handler(
    connector: str, source: WebhookSource, route: WebhookRoute, admission: _Admission, dead_letters: DeadLetters | None
) -> Handler:
    def count(outcome: str) -> None:
        WEBHOOK_REQUESTS.labels(connector, outcome).inc()

    async def handle(request: web.Request) -> web.StreamResponse:
        limits = admission.limits
        deadline = asyncio.get_running_loop().time() + limits.read_timeout_s
        announced = request.content_length or 0
        if announced > limits.max_body_bytes:  # before taking a slot or reading a byte
            count("too_large")
            return _error(413, f"the body is over {limits.max_body_bytes} bytes")
        if not await admission.enter(deadline):
            count("overloaded")
            return _error(503, "too many requests at once", retry_after=True, close=True)
        reserved = limits.max_body_bytes if request.content_length is None else announced
        try:
            if not admission.reserve(reserved):
                count("overloaded")
                return _error(503, "too many request bodies at once", retry_after=True, close=True)
            try:
                body = await read_body(request, limit=limits.max_body_bytes, deadline=deadline)
            finally:
                admission.release(reserved)
            webhook = WebhookRequest(
                headers=request.headers,
                body=body,
                query=request.query,
                method=request.method,
                path_params=dict(request.match_info),
                route=route,
            )
            return await _verified(webhook, request)
        except asyncio.CancelledError:
            if client_gone(request):  # it hung up while its request was handled: nothing is lost
                count("client_gone")
                log.debug("%s webhook: the client went away while it was handled", connector)
            raise
        except BodyTooLarge as exc:
            count("too_large")
            log.info("%s webhook refused: %s", connector, exc)
            return _error(413, f"the body is over {limits.max_body_bytes} bytes")
        except BodyTimeout as exc:
            count("timeout")
            log.info("%s webhook cut off: %s", connector, exc)
            return _error(408, "the request body did not arrive in time", close=True)
        except ClientGone as exc:
            count("client_gone")
            log.debug("%s webhook: the client went away (%s)", connector, exc)
            raise asyncio.CancelledError from None  # as aiohttp meant: there is nobody to answer
        finally:
            admission.leave()

    async def _verified(webhook: WebhookRequest, request: web.Request) -> web.StreamResponse:
        try:
            source.verify(webhook)
        except Unauthorized as exc:
            count("unauthorized")
            log.warning("%s webhook rejected: %s", connector, exc)
            if exc.body is not None:
                return web.json_response(exc.body, status=exc.status)
            return _error(exc.status, "unauthorized")
        try:
            response = await source.handle(webhook)
        except (SkippableError, ValidationError) as exc:
            count("bad_request")
            reason = str(exc) if isinstance(exc, SkippableError) else f"{exc.error_count()} invalid field(s)"
            log.info("%s webhook payload refused: %s", connector, reason)
            status = exc.status if isinstance(exc, SkippableError) and exc.status in (400, 413, 422) else 400
            return _error(status or 400, reason)
        except RetriableError as exc:
            # Only a transient failure makes the platform redeliver: nothing is lost when the broker is away.
            count("unavailable")
            log.warning("%s webhook not stored (%s); answered 503 so the platform retries", connector, exc)
            return _error(503, "temporarily unavailable", retry_after=True)
        except Exception as exc:  # a bug or a permanent problem: redelivering it would fail forever
            return await _dead_letter(webhook, request, exc)
        count(response.outcome if response.status < 300 else "refused")
        return _answer(response)

    async def _dead_letter(webhook: WebhookRequest, request: web.Request, exc: Exception) -> web.StreamResponse:
        reason = f"unexpected {type(exc).__name__} in {connector} {route.method} {route.path or '/'}: {exc}"[:500]
        if dead_letters is None:
            count("error")
            log.error("%s webhook failed and no dead-letter topic is set: %s", connector, reason)
            return _error(503, "temporarily unavailable", retry_after=True)
        letter = webhook_dead_letter(
            connector=connector,
            route=route.path or "/",
            method=webhook.method,
            path=request.path,
            headers=webhook.headers,
            query=webhook.query,
            body=webhook.body,
            reason=reason,
        )
        try:
            await send_to_dead_letters(dead_letters.publisher, dead_letters.topics, letter)
        except RetriableError as publish_error:
            count("unavailable")
            log.warning(
                "%s webhook failed (%s) and could not be dead-lettered (%s): 503", connector, reason, publish_error
            )
            return _error(503, "temporarily unavailable", retry_after=True)
        count("dead_lettered")
        log.error("%s webhook dead-lettered: %s", connector, reason)
        return web.json_response({"status": "dead-lettered"}, status=202)

    return handle


async def metrics_view(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def healthz_view(_request: web.Request) -> web.Response:
    return web.json_response(health.report())


async def readyz_view(_request: web.Request) -> web.Response:
    return web.json_response(health.report(), status=200 if health.ready() else 503)


def build_app(
    sources: list[tuple[str, WebhookSource]],
    *,
    dead_letters: DeadLetters | None = None,
    limits: HttpLimits | None = None,
) -> web.Application:
    """One aiohttp app serving every route of every source, /metrics and /healthz. Bodies are
    read by the handler itself (within the limits), so aiohttp's own cap is only a backstop."""
    limits = limits or HttpLimits()
    app = web.Application(client_max_size=limits.max_body_bytes)
    admission = _Admission(limits)
    for connector, source in sources:
        for route in source.routes:
            handler = _handler(connector, source, route, admission, dead_letters)
            app.router.add_route(route.method.upper(), webhook_path(connector, route), handler)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz_view)
    app.router.add_get("/readyz", readyz_view)
    return app
