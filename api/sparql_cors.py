"""CORS for the SPARQL endpoint alone, so browser tools (YASGUI) on other origins can query.

Off unless the setting ``sparql_cors_origins`` lists origins (``https://yasgui.example``,
or ``*`` for any). Only ``/v1/sparql`` answers cross-origin requests: the write routes and
the rest of the API never do. No credentials are allowed (the endpoint is read-only and
needs none); preflights may ask for the ``Accept`` and ``Content-Type`` headers.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

SPARQL_PATH = "/v1/sparql"
METHODS = ("GET", "HEAD", "POST", "OPTIONS")


class SparqlCors:
    """ASGI middleware: Starlette's CORS handling on ``SPARQL_PATH``, nothing elsewhere."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=METHODS,
                                   allow_headers=("Accept", "Content-Type"),
                                   expose_headers=("X-AutoCNC-Truncated",), max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == SPARQL_PATH:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
