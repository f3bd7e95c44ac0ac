"""Bounded input for the HTTP API: counted request bodies, and error answers that any input
can be rendered in.

:class:`BodyLimit` counts the bytes of every request body as the app reads them, chunked
bodies included, and stops the read with 413 at the limit (``max_ingest_bytes`` for
``/v1/ingest/…``, ``max_request_bytes`` for everything else), so no body over the limit is
ever read in full; a declared ``Content-Length`` over the limit is refused before a byte is
read. The error answers echo what the client sent (FastAPI's 422 includes the input), so
:func:`json_safe` makes them encodable whatever the input held: a lone surrogate
(``"\\udc00"`` is valid JSON) would otherwise make the renderer itself fail with a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

from kg.config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ECHO_CHARS = 1000  # characters of a client's value echoed in an error answer, at most
_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyLimit:
    """ASGI middleware: 413 for a request body over its route's limit (see module doc)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit(self, path: str) -> int:
        return (self.settings.max_ingest_bytes if path.startswith("/v1/ingest/")
                else self.settings.max_request_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, "Content-Length is not a number of bytes")
                return
            if int(declared) > limit:
                await _answer(send, 413, too_large(limit))
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into the route that reads the body: FastAPI passes an
                    # HTTPException through its body parsing, and the app answers it.
                    raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, counted, send)


def too_large(limit: int) -> str:
    return (f"request body over {limit} bytes (settings max_request_bytes, "
            "max_ingest_bytes for /v1/ingest)")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def json_safe(value: Any) -> Any:
    """``value`` with every string encodable as UTF-8 (lone surrogates as U+FFFD) and cut
    to :data:`ECHO_CHARS`; for error answers that echo the client's input."""
    if isinstance(value, str):
        if len(value) > ECHO_CHARS:
            value = value[:ECHO_CHARS] + f"... ({len(value)} characters)"
        if _SURROGATE.search(value):
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return json_safe(value.decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    return json_safe(str(value))
