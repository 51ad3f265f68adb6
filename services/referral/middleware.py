"""ASGI middleware: request body size limits (413) and request latency metrics by route template."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.referral.metrics import REQUEST_LATENCY

DEFAULT_BODY_LIMIT = 256 * 1024  # one event is a few kilobytes
LARGE_BODY_PATHS = ("/v1/events/batch", "/v1/imports/")
LARGE_BODY_LIMIT = 5 * 1024 * 1024  # batches of 500 events and school files


def body_limit_for(path: str) -> int:
    return LARGE_BODY_LIMIT if path.startswith(LARGE_BODY_PATHS) else DEFAULT_BODY_LIMIT


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps(
        {
            "errors": [
                {"field": "body", "rule": "body_too_large", "message": f"the body is over {limit} bytes"}
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Refuse a body over the limit from its Content-Length, or as soon as a chunked body passes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, limit)


class _BodyTooLarge(Exception):
    pass


class LatencyMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")  # a template: ids never become label values
            REQUEST_LATENCY.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
