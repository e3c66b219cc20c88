"""A bound on request bodies: one over :data:`MAX_BODY_BYTES` is refused with 413.

A destination's fields are a few KiB (each text at most 8 KiB, SPEC 4 bounds);
without a bound, ``POST /api/destinations`` read a 100 MB body into memory before
validating it. A declared ``Content-Length`` over the limit is refused before any
of the body is read; a chunked body is refused as soon as it passes the limit.
The answer is the API's error shape, naming the limit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The largest request body the admin API reads.
MAX_BODY_BYTES = 1024 * 1024
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """ASGI middleware: bodies of POST/PUT/PATCH requests at most ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"{declared:,} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes:,} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        message = (f"the request body is {size}, over the limit of {self.max_bytes:,} bytes "
                   "(a destination's fields take a few KiB: send only those)")
        body = json.dumps({"errors": [{"field": "", "message": message}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
