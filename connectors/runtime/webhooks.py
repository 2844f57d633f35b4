"""The HTTP server of the connector runtime: webhook endpoints, /metrics, /healthz.

Verification runs on the raw body before anything parses it; a request that fails it is
answered 401 and nothing reaches Kafka.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.base import Unauthorized, WebhookRequest, WebhookSource
from connectors.errors import SkippableError
from connectors.runtime.metrics import WEBHOOK_REQUESTS

log = logging.getLogger(__name__)


def webhook_path(connector: str, source: WebhookSource) -> str:
    return f"/webhooks/{connector}{source.path}"


def _handler(connector: str, source: WebhookSource):
    async def handle(request: web.Request) -> web.StreamResponse:
        webhook = WebhookRequest(headers=request.headers, body=await request.read(), query=request.query)
        try:
            source.verify(webhook)
        except Unauthorized as exc:
            WEBHOOK_REQUESTS.labels(connector, "unauthorized").inc()
            log.warning("%s webhook rejected: %s", connector, exc)
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            response = await source.handle(webhook)
        except SkippableError as exc:
            WEBHOOK_REQUESTS.labels(connector, "bad_request").inc()
            log.warning("%s webhook payload refused: %s", connector, exc)
            return web.json_response({"error": str(exc)}, status=400)
        except Exception:
            # 5xx makes the platform redeliver: nothing is lost when the broker is away.
            WEBHOOK_REQUESTS.labels(connector, "error").inc()
            log.exception("%s webhook failed; answered 500 so the platform retries", connector)
            return web.json_response({"error": "temporarily unavailable"}, status=500)
        WEBHOOK_REQUESTS.labels(connector, "accepted" if response.status < 300 else "refused").inc()
        if response.text is not None:
            return web.Response(status=response.status, text=response.text)
        if response.json is not None:
            return web.json_response(response.json, status=response.status)
        return web.Response(status=response.status)

    return handle


async def metrics_view(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def healthz_view(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(sources: list[tuple[str, WebhookSource]]) -> web.Application:
    app = web.Application(client_max_size=5 * 1024 * 1024)
    for connector, source in sources:
        app.router.add_post(webhook_path(connector, source), _handler(connector, source))
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz_view)
    return app
