"""The intake journal: accepted webhook notifications, durable before the graph has them.

The embedded store's checkpoints hold the graph's writer for a second or more; a webhook
answered only after its graph commit waits that long. So the receiver first appends each
accepted notification to this journal, an append-only log under ``<data_dir>/intake/``:
segment files of JSON lines (``{"v": 1, "seq", "scope", "options", "payload"}``), named by
their first sequence number. One journal thread takes every entry queued meanwhile, writes
them, fsyncs once for the batch, and only then resolves each entry's future (the
notification is durable) and hands the entries, in order, to the writer.

The writer applies them to the graph (group commit) and reports the highest sequence number
applied (:meth:`IntakeJournal.applied`); the mark is kept in memory and written to
``applied`` after each commit, atomically (a temporary file renamed), but without fsync:
after a crash an older mark only makes the start-up apply some entries again, which is
harmless because alert writes are idempotent (an occurrence is keyed by fingerprint and
startsAt). Segments wholly applied are deleted; the newest segment never is (it holds the
highest sequence number, from which numbering continues).

Back-pressure: an entry is refused (:class:`IntakeFull`, HTTP 503 with Retry-After) while
the journal holds more than ``max_entries`` or ``max_bytes`` not yet applied, so neither the
journal nor the writer's queue grows without bound; Alertmanager retries.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kg.errors import StoreUnavailable
from kg.timeseries import fsync_path

log = logging.getLogger("autocnc.intake")
VERSION = 1
MiB = 1 << 20


class IntakeFull(StoreUnavailable):
    """The intake journal holds its bound of notifications not yet applied to the graph
    (settings ``webhook_journal_max_entries`` / ``webhook_journal_max_mb``); retry shortly."""


@dataclass
class Entry:
    """One journaled notification; ``ref`` is what the caller attached (None on replay)."""

    seq: int
    scope: str
    options: dict[str, Any]
    payload: dict[str, Any]
    size: int  # bytes of its line
    ref: Any = None
    durable: Future[int] = field(default_factory=Future)
    line: bytes = b""  # as journaled (set on append)


def _line(e: Entry) -> bytes:
    return (json.dumps({"v": VERSION, "seq": e.seq, "scope": e.scope, "options": e.options,
                        "payload": e.payload}, separators=(",", ":"), ensure_ascii=False)
            + "\n").encode()


def read_segment(path: Path) -> list[Entry]:
    """The entries of one segment; a torn last line (a crash mid-append, never
    acknowledged) is skipped."""
    out = []
    with path.open("rb") as f:
        for raw in f:
            try:
                doc = json.loads(raw)
            except ValueError:
                log.warning("%s: skipping a torn line (%d bytes)", path.name, len(raw))
                continue
            if doc.get("v") != VERSION:
                raise ValueError(f"{path}: journal entry version {doc.get('v')!r}, "
                                 f"this server reads {VERSION}")
            out.append(Entry(doc["seq"], doc["scope"], doc["options"], doc["payload"],
                             len(raw)))
    return out


class IntakeJournal:
    """The journal under ``root``; :meth:`open` reads it, :meth:`start` starts appending."""

    def __init__(self, root: Path, *, max_entries: int, max_bytes: int,
                 segment_bytes: int = 16 * MiB) -> None:
        self.root, self.max_entries, self.max_bytes = root, max_entries, max_bytes
        self.segment_bytes = segment_bytes
        self.mark = 0  # highest seq applied to the graph
        self.head = 0  # highest seq accepted
        self.durable_head = 0  # highest seq fsynced
        self._bytes_accepted = self._bytes_applied = 0
        self._segments: list[tuple[int, Path]] = []  # (first seq, path), oldest first
        self._current: Any = None  # the open segment file
        self._current_size = 0
        self._unapplied: list[Entry] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[Entry | None] = queue.Queue()
        self._deliver: Callable[[Entry], None] | None = None
        self._thread = threading.Thread(target=self._run, name="intake-journal", daemon=True)

    @classmethod
    def open(cls, root: Path, *, max_entries: int, max_bytes: int,
             segment_bytes: int = 16 * MiB) -> IntakeJournal:
        """Read the applied mark and the segments; the entries after the mark are
        :meth:`unapplied` (to apply before serving)."""
        j = cls(root, max_entries=max_entries, max_bytes=max_bytes,
                segment_bytes=segment_bytes)
        root.mkdir(parents=True, exist_ok=True)
        mark_file = root / "applied"
        if mark_file.exists():
            doc = json.loads(mark_file.read_text())
            if doc.get("v") != VERSION:
                raise ValueError(f"{mark_file}: version {doc.get('v')!r}, this server reads "
                                 f"{VERSION}")
            j.mark = int(doc["seq"])
        paths = sorted(root.glob("*.jsonl"), key=lambda p: int(p.stem))
        for p in paths:
            entries = read_segment(p)
            j._segments.append((int(p.stem), p))
            j.head = max([j.head, *(e.seq for e in entries)])
            j._unapplied += [e for e in entries if e.seq > j.mark]
        j.head = j.durable_head = max(j.head, j.mark)
        j._bytes_accepted = sum(e.size for e in j._unapplied)
        j._drop_applied()
        return j

    def unapplied(self) -> list[Entry]:
        """The entries found after the applied mark at :meth:`open` (taken once)."""
        out, self._unapplied = self._unapplied, []
        return out

    def start(self, deliver: Callable[[Entry], None] | None) -> IntakeJournal:
        """Append from now on; ``deliver`` gets each entry once durable, in order (None:
        keep them in the journal only, applied at the next start)."""
        self._deliver = deliver
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._current is not None:
            self._current.close()
            self._current = None

    def append(self, scope: str, options: dict[str, Any], payload: dict[str, Any],
               ref: Any = None) -> Entry:
        """Queue a notification for the journal; its ``durable`` future gets its sequence
        number once fsynced. IntakeFull when the journal holds its bound unapplied."""
        with self._lock:
            entries, nbytes = self.lag()
            if entries >= self.max_entries or nbytes >= self.max_bytes:
                raise IntakeFull(
                    f"the intake journal holds {entries} notifications ({nbytes / MiB:.1f} "
                    "MiB) not yet applied to the graph, its bound; retry shortly")
            self.head += 1
            e = Entry(self.head, scope, options, payload, 0, ref)
            e.line = _line(e)
            e.size = len(e.line)
            self._bytes_accepted += e.size
            self._queue.put(e)
        return e

    def lag(self) -> tuple[int, int]:
        """Entries and bytes accepted and not yet applied to the graph."""
        return self.head - self.mark, self._bytes_accepted - self._bytes_applied

    def status(self) -> dict[str, Any]:
        entries, nbytes = self.lag()
        return {"appliedSeq": self.mark, "head": self.head, "durableHead": self.durable_head,
                "lagEntries": entries, "lagBytes": nbytes}

    def applied(self, seq: int, nbytes: int) -> None:
        """The writer committed every entry up to ``seq`` (``nbytes`` of them since the
        last call): move the mark, persist it, drop the segments wholly applied."""
        with self._lock:
            if seq <= self.mark:
                return
            self.mark = seq
            self._bytes_applied += nbytes
        tmp = self.root / "applied.tmp"
        tmp.write_text(json.dumps({"v": VERSION, "seq": seq}))
        os.replace(tmp, self.root / "applied")
        self._drop_applied()

    def _drop_applied(self) -> None:
        """Delete every segment but the newest whose entries are all applied."""
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] - 1 <= self.mark:
                _, path = self._segments.pop(0)
                path.unlink(missing_ok=True)

    # -- the journal thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._write(batch)
            except Exception as exc:  # the disk failed: nothing of the batch is durable
                log.error("intake journal append failed: %s", exc)
                with self._lock:  # never applied: out of the lag
                    self._bytes_accepted -= sum(e.size for e in batch)
                for e in batch:
                    e.durable.set_exception(exc)
                self._close_segment()
            else:
                self.durable_head = batch[-1].seq
                for e in batch:
                    e.durable.set_result(e.seq)
                    if self._deliver is not None:
                        self._deliver(e)
            if stop:
                return

    def _write(self, batch: list[Entry]) -> None:
        if self._current is None or self._current_size >= self.segment_bytes:
            self._close_segment()
            path = self.root / f"{batch[0].seq:016d}.jsonl"
            self._current = path.open("ab")
            self._current_size = 0
            with self._lock:
                self._segments.append((batch[0].seq, path))
            fsync_path(self.root)  # the new segment's name, durable
        data = b"".join(e.line for e in batch)
        self._current.write(data)
        self._current.flush()
        os.fsync(self._current.fileno())
        self._current_size += len(data)

    def _close_segment(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        self._drop_applied()
