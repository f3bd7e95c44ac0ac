"""The knowledge graph: the graph store (system of record) and the views derived from it.

``KnowledgeGraph.open(settings, writer=True)`` takes the single-writer lock on the data
directory, opens the graph store and the RDF view, and lets the view catch up with the
change log (so a crash after a graph write is repaired on the next open).
``writer=False`` opens everything read-only and takes no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kg.config import Settings
from kg.facts import FactBatch
from kg.lock import WriterLock
from kg.rdf_view import RdfView
from kg.snapshot import AnalyticSnapshot
from kg.store import GraphStore, QueryResult, WriteSummary, open_store
from ontology import Ontology, load_ontology


@dataclass
class KnowledgeGraph:
    settings: Settings
    onto: Ontology
    store: GraphStore
    rdf: RdfView
    lock: WriterLock | None = None
    _snapshot: AnalyticSnapshot | None = None
    # The writer syncs its views after every write it makes, and nothing else writes its
    # data directory: while this holds, reading the snapshot needs no change-log query.
    _synced: bool = False
    _closed: bool = False

    @classmethod
    def open(cls, settings: Settings, *, writer: bool = True, url: str | None = None
             ) -> KnowledgeGraph:
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
            kg.sync()
        return kg

    def write(self, batch: FactBatch) -> WriteSummary:
        """Upsert a batch into the graph store, then bring the derived views up to date."""
        self._synced = False
        summary = self.store.upsert(batch)
        self.sync()
        return summary

    def sync(self) -> None:
        self.rdf.catch_up(self.store)
        if self._snapshot is not None:
            self._snapshot.refresh(self.store)
        self._synced = self.lock is not None

    @property
    def snapshot(self) -> AnalyticSnapshot:
        if self._snapshot is None:
            self._snapshot = AnalyticSnapshot.build(self.store)
        elif not self._synced:
            self._snapshot.refresh(self.store)
        return self._snapshot

    def reindex(self) -> None:
        """Rebuild every derived view from the graph store (replay from zero)."""
        self.rdf.rebuild(self.store)
        self._snapshot = None

    def health(self) -> dict[str, Any]:
        head = self.store.head()
        views = {"rdf": {"watermark": self.rdf.watermark, "lag": head - self.rdf.watermark}}
        if self._snapshot is not None:
            views["snapshot"] = {"watermark": self._snapshot.watermark,
                                 "lag": head - self._snapshot.watermark}
        return {"store": self.settings.store, "changeLogHead": head, "views": views,
                "ontologyVersion": self.onto.version}

    def cypher(self, query: str, params: dict[str, Any] | None = None, *,
               write: bool = False) -> QueryResult:
        if write:
            self._synced = False
        res = self.store.query(query, params, write=write,
                               timeout_s=self.settings.query_timeout_s,
                               max_rows=self.settings.query_max_rows)
        if write:
            self.sync()
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
            self.store.close()
            self.rdf.close()
        finally:
            if self.lock:
                self.lock.release()
