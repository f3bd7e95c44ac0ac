"""The knowledge graph: the graph store (system of record) and the views derived from it.

``KnowledgeGraph.open(settings, writer=True)`` takes the single-writer lock on the data
directory, opens the graph store and the RDF view, and lets the view catch up with the
change log (so a crash after a graph write is repaired on the next open; the server leaves
that to its background syncer, ``rdf_in_background``).
``writer=False`` opens everything read-only and takes no lock.

A write is durable and visible to Cypher and to the analytic snapshot when ``write``
returns. The RDF view is caught up *lazily*: a write only marks it behind, and the next use
of ``kg.rdf`` (a SPARQL query), :meth:`KnowledgeGraph.catch_up_rdf` (the server calls it in
the background, in bounded rounds) or ``close`` applies every change since, many writes per
round, through Oxigraph's bulk loader when the round is big. Converting each small write to
RDF on its own doubled the cost of every write; the view still never misses a change (it
works from the change log and its watermark, and ``/healthz`` shows its lag).

:meth:`KnowledgeGraph.checkpoint` folds the embedded store's write-ahead log into its files
(the server calls it, see ``api.checkpoints``), so a restart after a crash replays little.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kg.config import Settings
from kg.facts import FactBatch, check_values
from kg.lock import WriterLock
from kg.rdf_view import RdfView
from kg.snapshot import AnalyticSnapshot
from kg.store import Checkpointing, GraphStore, QueryResult, WriteSummary, open_store
from ontology import Ontology, load_ontology

CLOSE_CATCH_UP_S = 5.0  # close() catches the RDF view up for this long at most


@dataclass
class KnowledgeGraph:
    settings: Settings
    onto: Ontology
    store: GraphStore
    view: RdfView  # use ``rdf``: it catches the view up first
    lock: WriterLock | None = None
    _snapshot: AnalyticSnapshot | None = None
    # The writer syncs its views after every write it makes, and nothing else writes its
    # data directory: while this holds, reading the snapshot needs no change-log query.
    _synced: bool = False
    _closed: bool = False
    _rdf_behind: bool = False  # this process wrote since the RDF view last caught up
    last_write: float = 0.0  # time.monotonic() of this process's last write
    _rdf_lock: threading.Lock = field(default_factory=threading.Lock)
    # Readers of the snapshot (RCA) hold it steady with this; writers refresh it only when
    # they can take it at once (see holding_snapshot).
    _snapshot_lock: threading.RLock = field(default_factory=threading.RLock)
    _holds: int = 0  # holding_snapshot() blocks entered by the thread holding the lock
    # The writer's change-log head, kept here so that health() reads no store: /healthz
    # must answer while a long write holds the store (nothing else writes the directory).
    _head: int | None = None
    # Moves whenever the RDF view changes (a catch-up applied something, a rebuild): query
    # workers reopen their read-only view when it moved (kg.query.workers).
    view_version: int = 0
    rebuilding: bool = False  # reindex() is replacing the views (not ready, see /readyz)
    checkpoints: int = 0  # checkpoints this process made (see checkpoint())
    checkpoint_s: float | None = None  # how long the last one took

    @classmethod
    def open(cls, settings: Settings, *, writer: bool = True, url: str | None = None,
             rdf_in_background: bool = False) -> KnowledgeGraph:
        onto = load_ontology()
        lock = None
        if writer:
            lock = WriterLock(settings.data_dir).acquire(
                url=url, token_required=bool(settings.api_token))
        try:
            opts: dict[str, Any] = settings.store_options()
            store = open_store(settings.store, onto=onto, read_only=not writer, **opts)
            try:
                rdf = RdfView.open(settings.data_dir, onto, settings.iri_base,
                                   read_only=not writer)
            except BaseException:
                store.close()
                raise
        except BaseException:
            if lock:
                lock.release()
            raise
        kg = cls(settings, onto, store, rdf, lock)
        if writer:
            kg._head = store.head()
            if rdf_in_background:  # the caller catches the view up (the server's syncer)
                kg._rdf_behind, kg._synced = True, True
            else:
                kg.sync()
        return kg

    def write(self, batch: FactBatch) -> WriteSummary:
        """Upsert a batch into the graph store and bring the snapshot up to date; the RDF
        view follows lazily (see the module doc). A value over ``max_value_bytes`` raises
        FactError naming its fact before anything is written."""
        check_values(batch, self.settings.max_value_bytes)
        self._synced = False
        summary = self.store.upsert(batch)
        if summary.seq is not None and self._head is not None:
            self._head = max(self._head, summary.seq)
        self._after_write()
        return summary

    @property
    def graph_version(self) -> int:
        """The change-log head as this process knows it (moves with every write)."""
        return self._head if self._head is not None else self.store.head()

    @property
    def read_version(self) -> int:
        """Moves with every write and every checkpoint, which both change the files that a
        read-only handle of the store reads: query workers reopen theirs when it moved."""
        return self.graph_version + self.checkpoints

    def log_bytes(self) -> int | None:
        """The size of the store's write-ahead log; None for a store that keeps none here."""
        return self.store.log_bytes() if isinstance(self.store, Checkpointing) else None

    def checkpoint(self) -> bool:
        """Fold the store's write-ahead log into its files, so that a restart after a crash
        replays little, first dropping the change-log payloads that every view of this
        process has applied; then flush the RDF view's memory to its files, for the same
        reason. Only the writer; False for a store that checkpoints on its own
        (Neo4j). Waits for a write in progress, and holds the next one meanwhile."""
        if self.lock is None or not isinstance(self.store, Checkpointing):
            return False
        applied = self.view.watermark
        if self._snapshot is not None:
            applied = min(applied, self._snapshot.watermark)
        t = time.perf_counter()
        self.store.checkpoint(applied)
        self.checkpoint_s = time.perf_counter() - t
        self.view.flush()  # the RDF view's own log, likewise replayed after a crash
        self.checkpoints += 1
        return True

    def _after_write(self) -> None:
        self._rdf_behind = True
        self.last_write = time.monotonic()
        self._refresh_snapshot()

    def sync(self) -> None:
        """Bring every derived view up to date with the change log now."""
        self.catch_up_rdf()
        self._refresh_snapshot()

    def _refresh_snapshot(self) -> None:
        if self._snapshot is not None:
            # a reader holding the snapshot (an analysis) keeps it: this write leaves it
            # behind, and the next reader catches it up, rather than waiting for the reader
            if not self._snapshot_lock.acquire(blocking=False):
                return
            try:
                if self._holds:
                    return
                self._snapshot.refresh(self.store)
            finally:
                self._snapshot_lock.release()
        self._synced = self.lock is not None

    @property
    def rdf(self) -> RdfView:
        """The RDF view, caught up with this process's writes."""
        if self._rdf_behind:
            self.catch_up_rdf()
        return self.view

    @property
    def rdf_behind(self) -> bool:
        return self._rdf_behind

    def catch_up_rdf(self, *, until: float | None = None,
                     round_facts: int | None = None) -> int:
        """Apply the changes the RDF view has not seen; returns how many were applied.
        With ``until`` (a ``time.monotonic()`` deadline), stop after the round of at most
        ``round_facts`` facts that passes it: the view stays behind (see RdfView.catch_up)."""
        with self._rdf_lock:
            self._rdf_behind = False
            try:
                applied = self.view.catch_up(
                    self.store, until=until,
                    **({"round_facts": round_facts} if round_facts else {}))
            except BaseException:
                self._rdf_behind = True
                raise
            if until is not None and self.view.watermark < self.graph_version:
                self._rdf_behind = True  # stopped at the deadline
            if applied:
                self.view_version += 1
            return applied

    @property
    def snapshot(self) -> AnalyticSnapshot:
        """The analytic snapshot, caught up with the change log (as it was when the
        enclosing :meth:`holding_snapshot` began, inside one)."""
        with self._snapshot_lock:
            if self._snapshot is None:
                self._snapshot = AnalyticSnapshot.build(self.store)
            elif not self._synced and not self._holds:
                self._snapshot.refresh(self.store)
            return self._snapshot

    @contextmanager
    def holding_snapshot(self) -> Iterator[AnalyticSnapshot]:
        """The snapshot caught up, then held steady until the block ends: writes go on
        meanwhile (they leave it behind rather than wait), so an analysis that reads it
        never holds the writers. Another thread that wants the snapshot waits."""
        with self._snapshot_lock:
            snap = self.snapshot
            self._holds += 1
            try:
                yield snap
            finally:
                self._holds -= 1

    def reindex(self) -> None:
        """Rebuild every derived view from the graph store (replay from zero)."""
        self.rebuilding = True
        try:
            with self._rdf_lock:
                self.view.rebuild(self.store)
                self._rdf_behind = False
                self.view_version += 1
            with self._snapshot_lock:  # an analysis in progress finishes on the old one
                self._snapshot = None
            if self.lock is not None:
                self._head = self.store.head()
        finally:
            self.rebuilding = False

    def health(self) -> dict[str, Any]:
        """The change-log head and each view's watermark and lag; what the RDF view set
        aside; the size of the store's write-ahead log and the checkpoints made (embedded
        store). The writer answers from memory, without waiting for the store."""
        head = self.graph_version
        mark = self.view.watermark
        rdf: dict[str, Any] = {"watermark": mark, "lag": max(0, head - mark)}
        aside, shown = self.view.set_aside()
        if aside:
            rdf["setAside"] = aside
            rdf["setAsideRecords"] = shown
        views: dict[str, Any] = {"rdf": rdf}
        if self._snapshot is not None:
            views["snapshot"] = {"watermark": self._snapshot.watermark,
                                 "lag": max(0, head - self._snapshot.watermark)}
        out = {"store": self.settings.store, "changeLogHead": head, "views": views,
               "ontologyVersion": self.onto.version}
        if (size := self.log_bytes()) is not None:  # a file's size: no store is asked
            out["writeAheadLog"] = {"bytes": size, "checkpoints": self.checkpoints,
                                    "lastCheckpointSeconds": self.checkpoint_s}
        return out

    def cypher(self, query: str, params: dict[str, Any] | None = None, *,
               write: bool = False) -> QueryResult:
        if write:
            self._synced = False
        res = self.store.query(query, params, write=write,
                               timeout_s=self.settings.query_timeout_s,
                               max_rows=self.settings.query_max_rows)
        if write:
            if self._head is not None:
                self._head = self.store.head()
            self._after_write()
        return res

    def sparql(self, query: str, params: dict[str, Any] | None = None) -> QueryResult:
        from ontology.competency import sparql_bindings

        return self.rdf.query(query, timeout_s=self.settings.query_timeout_s,
                              max_rows=self.settings.query_max_rows,
                              bindings=sparql_bindings(params) if params else None)

    def close(self) -> None:
        """Close the stores and release the writer lock; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._rdf_behind:  # leave a current view to the processes that open it next
                # (within bounds: what is left, the next writer to open catches up)
                self.catch_up_rdf(until=time.monotonic() + CLOSE_CATCH_UP_S)
        finally:
            self._close_stores()

    def _close_stores(self) -> None:
        try:
            self.store.close()
            self.view.close()
        finally:
            if self.lock:
                self.lock.release()
