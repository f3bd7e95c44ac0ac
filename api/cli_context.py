"""What every ``autocnc`` command shares: the global options, and where writes go.

Writes go to the process that holds the data directory's writer lock: when ``autocnc serve``
runs, commands send their work to its API (:func:`server`, :func:`http`); otherwise they
open the stores themselves (:func:`open_graph`, read-only for reads).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from kg.errors import AutoCNCError

if TYPE_CHECKING:  # imported where used: `autocnc --help` and server calls stay quick
    from rich.progress import Progress

    from kg.config import Settings

# The global options of the command line (set by its callback before any command runs).
OPTIONS: dict[str, Any] = {}


def settings() -> Settings:
    """The settings from the global options, the environment and the config file."""
    from kg.config import load_settings

    opts = dict(OPTIONS)
    return load_settings(opts.pop("config_file", None), **opts)


class ServerUnreachable(AutoCNCError):
    """The server that holds the data directory does not answer."""

    retryable = True


class PortUnavailable(AutoCNCError):
    """``autocnc serve`` cannot bind its address: in use, not permitted, or not local."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port = host, port
        super().__init__(f"cannot serve on {host}:{port}: {reason}")


def server(s: Settings) -> dict[str, Any] | None:
    """The running server that holds ``s.data_dir`` (its pid and url), or None."""
    from kg.lock import holder

    info = holder(s.data_dir)
    return info if info and info.get("url") else None


def http(info: dict[str, Any], method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    headers = kwargs.pop("headers", {})
    if os.environ.get("AUTOCNC_API_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['AUTOCNC_API_TOKEN']}"
    deadline = time.monotonic() + STARTING_WAIT_S
    while True:
        try:
            resp = httpx.request(method, info["url"] + path, headers=headers, timeout=600,
                                 **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"the server at {info['url']} (pid {info.get('pid', '?')}) holds the data "
                f"directory but does not answer: {exc or type(exc).__name__}") from exc
        # a server that is still starting answers 503 NotReady: wait for it
        if resp.status_code != 503 or time.monotonic() > deadline or \
                _error_name(resp) != "NotReady":
            break
        time.sleep(float(resp.headers.get("Retry-After", "1")))
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise AutoCNCError(f"server {info['url']} answered {resp.status_code}: {detail}")
    return resp


STARTING_WAIT_S = 600.0  # how long a command waits for a server that is still starting


def _error_name(resp: Any) -> str | None:
    try:
        doc = resp.json()
    except ValueError:
        return None
    return doc.get("error") if isinstance(doc, dict) else None


def open_graph(writer: bool) -> Any:
    from kg.graph import KnowledgeGraph

    return KnowledgeGraph.open(settings(), writer=writer)




class RichProgress:
    """The ingest progress protocol on a Rich progress bar (stderr)."""

    def __init__(self, progress: Progress) -> None:
        self._p = progress
        self._task: Any = None

    def start(self, total: int | None, description: str) -> None:
        if self._task is not None:
            self._p.remove_task(self._task)
        self._task = self._p.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._p.advance(self._task, n)
