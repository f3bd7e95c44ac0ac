"""HTTP plumbing shared by the clients of the operator's peers (kg.prometheus,
kg.alertmanager): one configured client, a bounded read that turns transport failures into
the peer's own "unavailable" error, and Go's RFC 3339 times.

Each client keeps its own error classes and its reading of the answer; what is here is only
what they do alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

_FRACTION = re.compile(r"(\.\d{6})\d+")

ErrorFactory = Callable[[str, str], Exception]  # (url, reason) -> the peer's error


def peer_client(*, bearer_token: str | None, username: str | None, password: str | None,
                timeout_s: float) -> httpx.Client:
    """An HTTP client for a peer's JSON API: a bearer token, else basic auth when a user
    name is set; the timeout for every call; redirects not followed."""
    headers = {"Accept": "application/json", "User-Agent": "autocnc"}
    auth: httpx.BasicAuth | None = None
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    elif username:
        auth = httpx.BasicAuth(username, password or "")
    return httpx.Client(headers=headers, auth=auth, timeout=httpx.Timeout(timeout_s),
                        follow_redirects=False)


def read_bounded(http: httpx.Client, request: httpx.Request, url: str, max_bytes: int, *,
                 unavailable: ErrorFactory, too_large: Callable[[str], Exception]
                 ) -> tuple[int, bytes]:
    """Send ``request`` and read at most ``max_bytes`` of its answer: (status, body).
    A timeout or a transport failure raises ``unavailable(url, reason)``, an answer over
    the bound ``too_large(url)``, before more of it is read."""
    try:
        response = http.send(request, stream=True)
        try:
            read = 0
            chunks = []
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read > max_bytes:
                    raise too_large(url)
                chunks.append(chunk)
        finally:
            response.close()
    except httpx.TimeoutException as exc:
        raise unavailable(url, f"no answer within the timeout ({type(exc).__name__})"
                          ) from exc
    except httpx.TransportError as exc:
        raise unavailable(url, f"cannot reach it: {exc}") from exc
    return response.status_code, b"".join(chunks)


def go_time(text: Any) -> datetime | None:
    """Go's RFC 3339 (nanoseconds, ``Z``) in UTC, cut to microseconds; None when absent or
    unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
