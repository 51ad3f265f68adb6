"""ASGI middleware: the referral API's body limits (shared.bodylimit, per path) and latency by route."""

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


def too_large_problem(limit: int) -> bytes:
    """The 413 answer in the referral API's error shape."""
    problem = {"field": "body", "rule": "body_too_large", "message": f"the body is over {limit} bytes"}
    return orjson.dumps({"errors": [problem]})


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
