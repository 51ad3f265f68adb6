"""ASGI middleware: refuse a request body over a limit (413) before the app buffers it.

FastAPI reads a JSON body whole, before any dependency runs, so without a limit an unauthenticated caller can
make a service hold any amount of memory. The limit is checked on the declared Content-Length and, for a
chunked body, as the chunks arrive. A service may set the limit per path and the shape of its 413 answer.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_LIMIT = 256 * 1024  # a search, a decision or an acknowledgement is a few hundred bytes


def detail_problem(limit: int) -> bytes:
    return orjson.dumps({"detail": f"the body is over {limit} bytes"})


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        limit: int = DEFAULT_LIMIT,
        *,
        limit_for: Callable[[str], int] | None = None,
        problem: Callable[[int], bytes] = detail_problem,
    ) -> None:
        self.app = app
        self.limit_for = limit_for or (lambda _path: limit)
        self.problem = problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._too_large(send, limit)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large(send, limit)

    async def _too_large(self, send: Send, limit: int) -> None:
        body = self.problem(limit)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
