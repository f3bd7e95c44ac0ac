"""The single-writer lock on a data directory.

One process writes a data directory: ``autocnc serve`` while it runs, otherwise the CLI.
The lock is an ``flock`` on ``<data-dir>/writer.lock`` (released by the kernel when the
holder dies, so a crash never leaves a stale lock); the holder writes its pid and, for the
server, its URL into ``<data-dir>/writer.json`` so that CLI commands can find it.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

from kg.errors import StoreLocked


class WriterLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._fh: IO[str] | None = None

    def acquire(self, *, url: str | None = None, token_required: bool = False) -> WriterLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.data_dir / "writer.lock", "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise StoreLocked(str(self.data_dir), holder(self.data_dir) or {}) from None
        self._fh = fh
        info = {"pid": os.getpid(), "url": url, "tokenRequired": token_required}
        tmp = self.data_dir / "writer.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.data_dir / "writer.json")
        return self

    def release(self) -> None:
        if self._fh is not None:
            (self.data_dir / "writer.json").unlink(missing_ok=True)
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(data_dir: Path) -> dict[str, Any] | None:
    """Who holds the writer lock of ``data_dir`` now (pid, server url), or None if free."""
    lock_path = Path(data_dir) / "writer.lock"
    if not lock_path.exists():
        return None
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads((Path(data_dir) / "writer.json").read_text())
                return info if isinstance(info, dict) else {}
            except (OSError, ValueError):
                return {}
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
