"""The in-memory analytic snapshot: node and edge tables plus sparse adjacency.

Hot paths (RCA, embeddings, recommendation) never make per-node database round trips: they
work on this snapshot, which is derived from the graph store like the RDF view (watermark +
catch-up from the change log) and keeps only currently valid facts (no ``validTo``).

It holds each fact's class and whether it is valid, and a write sets both from the fact as
given (the class is the fact's type; ``validTo`` is the fact's, not merged), so the
change-log payloads alone bring it up to date: no read of the graph store. The event index
(:class:`kg.events.EventIndex`: events by time, what they are about, series and causal
edges) is part of it, built from the same scan and moved by the same payloads, so both share
one watermark. A short journal of what each applied entry touched lets a consumer that
compiled something from the snapshot (RCA's propagation graph) see whether the entries since
then matter to it without reading the change log again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from kg.events import EventIndex
from kg.store.base import FactState, GraphStore, RelKey

JOURNAL = 2_000  # entries the journal keeps; older ones: "unknown", consumers recompile


@dataclass(frozen=True)
class Touched:
    """What one change-log entry changed in the snapshot's structure: relations that are
    new or changed validity, and entities that existed before and changed class or
    validity (re-sent facts that changed neither are not listed)."""

    seq: int
    relations: tuple[RelKey, ...]
    changed_nodes: tuple[int, ...]


@dataclass
class AnalyticSnapshot:
    index: dict[str, int] = field(default_factory=dict)  # iri -> node id
    iris: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    alive: list[bool] = field(default_factory=list)
    edges: dict[RelKey, bool] = field(default_factory=dict)  # key -> valid
    rel_types: list[str] = field(default_factory=list)
    watermark: int = 0
    events: EventIndex = field(default_factory=lambda: EventIndex({}))  # see build
    journal: deque[Touched] = field(default_factory=lambda: deque(maxlen=JOURNAL))
    journal_from: int = 0  # the journal holds every entry after this sequence number
    _csr: sp.csr_matrix | None = None

    @classmethod
    def build(cls, graph: GraphStore) -> AnalyticSnapshot:
        snap = cls(rel_types=list(graph.schema.relation_types))
        snap.events = EventIndex.empty(graph.schema, snap.index)
        head = graph.head()
        for ents, rels in graph.scan():
            snap._apply(ents, rels)
            snap.events.apply_states(ents, rels)
        snap.events.finish_scan(head)
        snap.watermark = snap.journal_from = head
        return snap

    def refresh(self, graph: GraphStore, limit: int = 100) -> int:
        """Catch up with the change log; returns the number of changes applied."""
        applied = 0
        while entries := graph.changes(self.watermark, limit=limit):
            if any(e.opaque for e in entries):
                fresh = AnalyticSnapshot.build(graph)
                self.__dict__.update(fresh.__dict__)
                return applied + len(entries)
            for e in entries:
                changed = self._apply_payload(e.batch)
                self.events.apply_payload(e.batch)
                self._journal(Touched(e.seq, *changed))
            self.watermark = self.events.watermark = entries[-1].seq
            applied += len(entries)
            if len(entries) < limit:  # that was all there is: spare the empty round trip
                break
        return applied

    def _journal(self, touched: Touched) -> None:
        if len(self.journal) == self.journal.maxlen:
            self.journal_from = self.journal[0].seq
        self.journal.append(touched)

    def touched_since(self, watermark: int) -> list[Touched] | None:
        """What the entries after ``watermark`` touched; None when the journal does not
        reach back that far (or the snapshot was rebuilt since)."""
        if watermark < self.journal_from:
            return None
        out = []
        for t in reversed(self.journal):
            if t.seq <= watermark:
                break
            out.append(t)
        return out[::-1]

    def _apply(self, ents: dict[str, FactState], rels: dict[RelKey, FactState]) -> None:
        for iri, st in ents.items():
            i = self._node(iri)
            self.kinds[i] = st.kind
            self.alive[i] = st.valid_to is None
        for key, st in rels.items():
            self._node(key[1])
            self._node(key[2])
            self.edges[key] = st.valid_to is None
        if ents or rels:
            self._csr = None

    def _apply_payload(self, batch: dict[str, Any]
                       ) -> tuple[tuple[RelKey, ...], tuple[int, ...]]:
        """Apply one entry; returns the relations it created or changed the validity of,
        and the existing entities whose class or validity it changed."""
        known = len(self.iris)
        changed_nodes = []
        for f in batch.get("entities", []):
            i = self._node(f["iri"])
            kind, alive = f["type"], f.get("validTo") is None
            if i < known and (self.kinds[i] != kind or self.alive[i] != alive):
                changed_nodes.append(i)
            self.kinds[i] = kind
            self.alive[i] = alive
        relations = []
        for f in batch.get("relations", []):
            self._node(f["start"])
            self._node(f["end"])
            key, valid = (f["type"], f["start"], f["end"]), f.get("validTo") is None
            if self.edges.get(key) is not valid:
                relations.append(key)
            self.edges[key] = valid
        self._csr = None
        return tuple(relations), tuple(changed_nodes)

    def _node(self, iri: str) -> int:
        i = self.index.get(iri)
        if i is None:
            i = self.index[iri] = len(self.iris)
            self.iris.append(iri)
            self.kinds.append("")
            self.alive.append(True)
        return i

    @property
    def node_count(self) -> int:
        return len(self.iris)

    @property
    def edge_count(self) -> int:
        return sum(self.edges.values())

    def adjacency(self) -> sp.csr_matrix:
        """Directed adjacency of valid relations (all types) as a CSR matrix."""
        if self._csr is None:
            pairs = [(self.index[s], self.index[t]) for (_, s, t), ok in self.edges.items() if ok]
            n = len(self.iris)
            if pairs:
                src, dst = np.array(pairs, dtype=np.int64).T
            else:
                src = dst = np.zeros(0, dtype=np.int64)
            self._csr = sp.csr_matrix((np.ones(len(src), dtype=np.float32), (src, dst)),
                                      shape=(n, n))
        return self._csr

    def neighbourhood(self, iri: str, hops: int) -> set[str]:
        """IRIs within ``hops`` relations of ``iri``, either direction (``iri`` excluded)."""
        start = self.index.get(iri)
        if start is None:
            return set()
        a = self.adjacency()
        und = (a + a.T).tocsr()
        seen = {start}
        frontier = deque([(start, 0)])
        while frontier:
            node, d = frontier.popleft()
            if d == hops:
                continue
            for nb in und.indices[und.indptr[node]:und.indptr[node + 1]]:
                if nb not in seen:
                    seen.add(int(nb))
                    frontier.append((int(nb), d + 1))
        seen.discard(start)
        return {self.iris[i] for i in seen}
