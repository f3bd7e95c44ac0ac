"""A background thread that calls a function at a fixed interval (the server's workers)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread named ``name`` until
    stopped. A tick that raises is logged to ``logger`` and the next one tries again."""

    def __init__(self, name: str, interval: float, tick: Callable[[], object],
                 logger: str) -> None:
        self.interval, self.tick, self.logger = interval, tick, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # keep ticking
                logging.getLogger(self.logger).exception("%s failed", self._thread.name)
