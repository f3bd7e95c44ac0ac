"""LadybugDB-specific behaviour of the embedded store (the contract suite covers the rest)."""

from __future__ import annotations

from pathlib import Path

from kg.facts import Entity, FactBatch, Relation
from kg.store.embedded import LadybugStore
from ontology import mint_iri


def test_writes_do_not_accumulate_prepared_statements(tmp_path: Path) -> None:
    """Statements prepared for Arrow parameters are dropped after use: kept, each one pinned
    its table and buffer-pool pages, and a few hundred small writes exhausted the pool."""
    store = LadybugStore.connect(tmp_path)
    try:
        sizes = []
        for i in range(60):
            ents = [Entity(mint_iri(f"s{i}", "NetworkNode", str(j)), "NetworkNode",
                           {"name": str(j)}) for j in range(10)]
            rels = [Relation("linkedTo", ents[j].iri, ents[j + 1].iri) for j in range(9)]
            store.upsert(FactBatch.of("t", ents, rels))
            store.upsert(FactBatch.of("t", ents, rels))  # touches: the update paths
            store.fetch([e.iri for e in ents] * 30, [r.key for r in rels])  # the Arrow path
            sizes.append(len(store._conn._pybind_implicit_prepared_cache))
        assert sizes[-1] <= sizes[10] + 3  # bounded: only reusable statements stay cached
        assert max(sizes) < 40
    finally:
        store.close()
