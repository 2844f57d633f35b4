"""Reading a webhook's raw body without trusting the client: never more than the limit, never
longer than the read timeout, and a client that goes away is not an error of ours."""

from __future__ import annotations

import asyncio

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import BadHttpMessage


class BodyTooLarge(Exception):
    """Answered 413."""


class BodyTimeout(Exception):
    """The client sent its body too slowly (or stopped): answered 408 and cut off."""


class ClientGone(Exception):
    """The client disconnected before its body arrived: nobody is left to answer."""


async def read_body(request: web.BaseRequest, *, limit: int, deadline: float) -> bytes:
    """The whole body, read by chunks until `deadline` (loop time). Refuses at once when
    Content-Length announces more than `limit`; a chunked body is read up to the limit, not one
    byte further buffered."""
    announced = request.content_length
    if announced is not None and announced > limit:
        raise BodyTooLarge(f"Content-Length {announced} is over the limit of {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            while chunk := await request.content.readany():
                if len(body) + len(chunk) > limit:
                    raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
                body += chunk
    except TimeoutError:
        raise BodyTimeout(f"the body did not arrive within the read timeout ({len(body)} bytes came)") from None
    except (ConnectionError, ClientPayloadError, BadHttpMessage) as exc:
        raise ClientGone(f"{type(exc).__name__} after {len(body)} bytes") from None
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the connection drops; any other cancellation is ours.
        if client_gone(request):
            raise ClientGone(f"the connection closed after {len(body)} bytes") from None
        raise
    return bytes(body)


def client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
