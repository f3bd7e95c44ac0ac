"""The recommender: catalogue, success statistics and query vectors kept warm.

:class:`Recommender` answers with ranked runbooks and policies for a problem
(:mod:`reasoning.recommend.query`), each with its score, the contribution of every signal
and the reasons (:mod:`reasoning.recommend.ranker`), and records feedback
(:mod:`reasoning.recommend.feedback`). It is built once per process; the catalogue is
rebuilt only when a fact it depends on changed (it reads the change log since its last
look) and is kept in the data directory (:mod:`reasoning.recommend.persist`), so a one-off
command loads it instead of building it; the success statistics are reloaded when feedback
or action executions were written; the sentence model is loaded only when a query needs
embedding, and query vectors are cached — so a recommendation costs BM25 products, a
vector product and at most one embedding.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reasoning.recommend import persist, signals
from reasoning.recommend.catalogue import CATALOGUE_KINDS, CATALOGUE_RELATIONS, Catalogue
from reasoning.recommend.feedback import (
    FeedbackInput,
    StoredFeedback,
    SuccessStats,
    write_feedback,
)
from reasoning.recommend.query import ProblemQuery
from reasoning.recommend.ranker import (
    QueryVectors,
    Recommendation,
    RecommendWeights,
    rank,
)

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

WEIGHTS_FILE = "recommend-weights.json"
STATS_KINDS = frozenset({"Feedback", "ActionExecution"})
STATS_RELATIONS = frozenset({"feedbackOn", "followsPlan", "followsPolicy"})
QUERY_CACHE = 1024
QUERY_TOKENS = 64


@dataclass
class RecommendationResult:
    query: ProblemQuery
    recommendations: list[Recommendation]
    took_ms: float
    weights: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query.to_json(),
                "recommendations": [r.to_json(i + 1)
                                    for i, r in enumerate(self.recommendations)],
                "tookMs": round(self.took_ms, 3), "weights": self.weights,
                "notes": self.notes}


def _embed_one(text: str) -> np.ndarray:
    """A problem's vector from its first QUERY_TOKENS word pieces: the cost of an
    embedding grows with its tokens and an alert's summary and the start of its
    description carry its meaning (measured in bench/recommend_runbooks.py)."""
    from ingest import text_vectors

    return text_vectors.embed([text], max_tokens=QUERY_TOKENS)[0]


class Recommender:
    def __init__(self, kg: KnowledgeGraph, weights: RecommendWeights | None = None, *,
                 embed: bool = True) -> None:
        self.kg = kg
        self.weights = weights or RecommendWeights.load(
            kg.settings.data_dir / "models" / WEIGHTS_FILE)
        self.embed = embed
        self._cat: Catalogue | None = None
        self._stats: SuccessStats | None = None
        self._watermark = -1
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    # -- state -------------------------------------------------------------------------------
    def catalogue(self) -> Catalogue:
        """The catalogue, rebuilt when a catalogue fact changed since the last call; on the
        first call the one kept in the data directory, when nothing changed since it."""
        head = self.kg.graph_version  # from memory in the writer: no store round trip
        if self._cat is None:
            self._cat = self._stored(head)
            self._stats = None
            if self._cat is None:
                self._cat = self._build(head)
        elif head != self._watermark:
            items_changed, stats_changed = self._changed_since(self._watermark)
            if items_changed:
                self._cat = self._build(head)
            if stats_changed:
                self._stats = None
        self._watermark = head
        return self._cat

    def _build(self, head: int) -> Catalogue:
        cat = Catalogue.build(self.kg, embed=self.embed)
        try:
            persist.save(cat, persist.catalogue_path(self.kg.settings.data_dir), head,
                         self.embed)
        except OSError as exc:  # a read-only data directory: only slower next time
            cat.notes.append(f"catalogue not kept in the data directory: {exc}")
        return cat

    def _stored(self, head: int) -> Catalogue | None:
        found = persist.load(persist.catalogue_path(self.kg.settings.data_dir), self.embed)
        if found is None:
            return None
        cat, watermark = found
        if watermark > head or (watermark < head and self._changed_since(watermark)[0]):
            return None  # another store, or catalogue facts changed since
        return cat

    def stats(self) -> SuccessStats:
        if self._stats is None:
            self._stats = SuccessStats.load(self.kg)
        return self._stats

    def _changed_since(self, after: int) -> tuple[bool, bool]:
        items = stats = False
        while entries := self.kg.store.changes(after, limit=200):
            for e in entries:
                if e.opaque:
                    return True, True
                ent_ops, rel_ops = e.ops()
                ents = e.batch.get("entities", [])
                rels = e.batch.get("relations", [])
                for k, x in enumerate(ents):
                    if ent_ops and k < len(ent_ops) and ent_ops[k] == "t":
                        continue  # only seen again
                    items |= x.get("type") in CATALOGUE_KINDS
                    stats |= x.get("type") in STATS_KINDS
                for k, r in enumerate(rels):
                    if rel_ops and k < len(rel_ops) and rel_ops[k] == "t":
                        continue
                    items |= r.get("type") in CATALOGUE_RELATIONS
                    stats |= r.get("type") in STATS_RELATIONS
            after = entries[-1].seq
        return items, stats

    def _query_vector(self, query: ProblemQuery) -> np.ndarray | None:
        """The problem's sentence vector (embedded, cached by text)."""
        return self._vector(query.sentence)

    def _vector(self, text: str) -> np.ndarray | None:
        cat = self._cat
        if not text or cat is None or cat.vectors is None:
            return None
        vec = self._vectors.get(text)
        if vec is None:
            vec = _embed_one(text)
            self._vectors[text] = vec
            if len(self._vectors) > QUERY_CACHE:
                self._vectors.popitem(last=False)
        else:
            self._vectors.move_to_end(text)
        return vec

    # -- answers -----------------------------------------------------------------------------
    def recommend(self, query: ProblemQuery, *, limit: int = 10,
                  kinds: Sequence[str] = ("runbook", "policy"),
                  weights: RecommendWeights | None = None) -> RecommendationResult:
        """Ranked runbooks and policies for ``query`` (see :mod:`reasoning.recommend`)."""
        t0 = time.perf_counter()
        cat = self.catalogue()
        w = weights or self.weights
        if w.values.get("similarAlerts"):
            cat.with_definition_vectors(self.kg.settings.data_dir)
        recs = rank(cat, query, QueryVectors(self._query_vector(query)), self.stats(), w,
                    limit=limit, kinds=kinds)
        notes = list(cat.notes)
        if not cat.items:
            notes.append("nothing to recommend: ingest runbooks (autocnc ingest runbooks) "
                         "or load policies (autocnc policies)")
        return RecommendationResult(query, recs, (time.perf_counter() - t0) * 1000,
                                    w.source, notes)

    def signals(self, query: ProblemQuery) -> signals.Signals:
        """Every signal of every catalogue item for ``query`` (``similarAlerts`` too, even
        when its weight is 0): what weights are fitted on (bench/recommend_runbooks.py)."""
        cat = self.catalogue()
        cat.with_definition_vectors(self.kg.settings.data_dir)
        return signals.compute(cat, query, self._query_vector(query), True)

    def feedback(self, fb: FeedbackInput) -> StoredFeedback:
        """Store the feedback as facts and learn from it at once."""
        stored = write_feedback(self.kg, fb)
        if fb.kind == "recommendation":
            self.stats().observe(fb.target, fb.accepted, stored.context)
        return stored
