"""A graph neural network (PyTorch Geometric) that scores root-cause likelihood.

Input: the candidates of one RCA — each with the RCA engine's signals
(:data:`reasoning.rca.engine.SIGNALS`; the names are kept in the model's metadata, so a
model trained on fewer signals still loads) — and the relations among them in the analytic
snapshot. Node features are those signals, the candidate's coarse class (one-hot over
:data:`KIND_GROUPS`) and its log degree. Two GraphSAGE layers let each candidate see its
neighbours' evidence (a node whose dependencies are all anomalous is less likely the root
than the dependency itself), and a linear head over the convolved and the raw features
gives a logit per candidate. Training is listwise: a softmax over the candidates of an
incident, cross-entropy on the confirmed root cause(s).

Labelled cases come from confirmed root causes in feedback
(:func:`reasoning.rca.train.feedback_cases`: the incident's symptoms are analysed again to
get its candidates) and from labelled benchmark
cases the caller builds with :func:`case_from_candidates` — the train split of the RCA
benchmark only, never its test split. :func:`gnn_scores` is the score RCA fuses as its
``gnn`` signal (:mod:`reasoning.rca.learned`); it is off by default because the measured
ablation does not show it helping (docs/rca.md, "Learned signals").
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kg.facts import now_utc
from reasoning.embeddings.store import ModelStore, library_versions
from reasoning.rca.engine import SIGNALS

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.snapshot import AnalyticSnapshot
    from ontology import Ontology

MODEL_NAME = "rca-gnn"
KIND_GROUPS = ("Pod", "Container", "Workload", "KubernetesNode", "KubernetesCluster",
               "ComputeNode", "Accelerator", "Service", "Application", "NetworkLink",
               "NetworkNode", "ComputeSite")
# what a model is trained on unless told otherwise: every signal of the RCA engine
BASE_SIGNALS: tuple[str, ...] = SIGNALS


@dataclass
class LabelledCase:
    """The candidates of one incident with their features, relations and the truth."""

    candidates: list[str]
    signals: np.ndarray  # candidates × len(signal names)
    kinds: list[str]
    degrees: np.ndarray
    edges: list[tuple[int, int]]
    positives: set[int] = field(default_factory=set)

    def subset(self, keep: Sequence[int]) -> LabelledCase:
        """The case restricted to the candidates ``keep`` (indices, in that order) — e.g. the
        top of a ranking, as RCA returns it — with the relations among them."""
        new = {old: i for i, old in enumerate(keep)}
        return LabelledCase([self.candidates[i] for i in keep], self.signals[list(keep)],
                            [self.kinds[i] for i in keep], self.degrees[list(keep)],
                            [(new[a], new[b]) for a, b in self.edges if a in new and b in new],
                            {new[p] for p in self.positives if p in new})


def kind_group(kind: str, onto: Ontology) -> int:
    """Index of the first group ``kind`` falls under, or len(KIND_GROUPS) for others."""
    if kind in onto.classes:
        for i, g in enumerate(KIND_GROUPS):
            if g in onto.classes and onto.is_subclass(kind, g):
                return i
    return len(KIND_GROUPS)


def case_from_candidates(snap: AnalyticSnapshot, candidates: Sequence[str],
                         signals: Mapping[str, Mapping[str, float]],
                         signal_names: Sequence[str] = BASE_SIGNALS,
                         truth: Sequence[str] = ()) -> LabelledCase:
    """A case of ``candidates`` (IRIs) with their signals; relations among them come from
    the snapshot (either direction, any type)."""
    index = {iri: i for i, iri in enumerate(candidates)}
    adj = snap.adjacency()
    und = (adj + adj.T).tocsr()
    edges: list[tuple[int, int]] = []
    degrees = np.zeros(len(candidates), dtype=np.float32)
    kinds = []
    for i, iri in enumerate(candidates):
        node = snap.index.get(iri)
        kinds.append(snap.kinds[node] if node is not None else "")
        if node is None:
            continue
        nbrs = und.indices[und.indptr[node]:und.indptr[node + 1]]
        degrees[i] = len(nbrs)
        for nb in nbrs:
            j = index.get(snap.iris[int(nb)])
            if j is not None and j != i:
                edges.append((i, j))
    feats = np.array([[float(signals.get(c, {}).get(s, 0.0)) for s in signal_names]
                      for c in candidates], dtype=np.float32).reshape(len(candidates),
                                                                     len(signal_names))
    return LabelledCase(list(candidates), feats, kinds, degrees, edges,
                        {index[t] for t in truth if t in index})


# -- the model -------------------------------------------------------------------------------

def _module(in_dim: int, hidden: int) -> Any:
    import torch
    from torch_geometric.nn import SAGEConv

    class RootCauseSAGE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = SAGEConv(in_dim, hidden)
            self.conv2 = SAGEConv(hidden, hidden)
            self.head = torch.nn.Linear(hidden + in_dim, 1)

        def forward(self, x: Any, edge_index: Any) -> Any:
            h = torch.relu(self.conv1(x, edge_index))
            h = torch.relu(self.conv2(h, edge_index))
            return self.head(torch.cat([h, x], dim=-1)).squeeze(-1)

    return RootCauseSAGE()


@dataclass
class RootCauseGNN:
    module: Any
    signal_names: list[str]
    hidden: int
    meta: dict[str, Any]
    onto: Ontology

    def features(self, case: LabelledCase) -> Any:
        import torch

        onehot = np.zeros((len(case.candidates), len(KIND_GROUPS) + 1), dtype=np.float32)
        for i, k in enumerate(case.kinds):
            onehot[i, kind_group(k, self.onto)] = 1.0
        deg = np.log1p(case.degrees).reshape(-1, 1) / 5.0
        return torch.as_tensor(np.hstack([case.signals, onehot, deg]), dtype=torch.float32)

    def batch(self, cases: Sequence[LabelledCase]) -> tuple[Any, Any, Any, Any]:
        """The cases as one disjoint graph: features, edges, case of each node, and the
        indices of the root-cause nodes."""
        import torch

        xs, edges, batch, positives = [], [], [], []
        offset = 0
        for k, case in enumerate(cases):
            xs.append(self.features(case))
            edges += [(i + offset, j + offset) for i, j in case.edges]
            batch += [k] * len(case.candidates)
            positives += [p + offset for p in sorted(case.positives)]
            offset += len(case.candidates)
        edge_index = torch.as_tensor(np.array(edges, dtype=np.int64).reshape(-1, 2).T,
                                     dtype=torch.long)
        return (torch.cat(xs), edge_index, torch.as_tensor(batch, dtype=torch.long),
                torch.as_tensor(positives, dtype=torch.long))

    def logits(self, case: LabelledCase) -> Any:
        import torch

        edge_index = torch.as_tensor(np.array(case.edges, dtype=np.int64).reshape(-1, 2).T,
                                     dtype=torch.long)
        return self.module(self.features(case), edge_index)

    def score(self, case: LabelledCase) -> dict[str, float]:
        """Root-cause likelihood per candidate, scaled so the most likely has 1."""
        import torch

        if not case.candidates:
            return {}
        self.module.eval()
        with torch.no_grad():
            p = torch.softmax(self.logits(case), dim=0).numpy()
        top = float(p.max()) or 1.0
        return {c: float(p[i] / top) for i, c in enumerate(case.candidates)}

    def save(self, data_dir: Path) -> Any:
        return ModelStore(data_dir, MODEL_NAME).save(self.module, self.meta)

    @classmethod
    def load(cls, data_dir: Path, onto: Ontology) -> RootCauseGNN:
        version = ModelStore(data_dir, MODEL_NAME).require()
        meta = version.meta
        names = list(meta["signals"])
        module = _module(len(names) + len(KIND_GROUPS) + 2, int(meta["hidden"]))
        version.load_into(module)
        module.eval()
        return cls(module, names, int(meta["hidden"]), meta, onto)


def train_gnn(cases: Sequence[LabelledCase], onto: Ontology, *,
              signal_names: Sequence[str] = BASE_SIGNALS, hidden: int = 32, epochs: int = 150,
              lr: float = 0.01, seed: int = 0, progress: Any = None,
              sources: Mapping[str, int] | None = None) -> RootCauseGNN:
    """Fit the GNN on labelled cases (those without a positive among their candidates are
    skipped and counted in the metadata)."""
    import torch
    from torch_geometric.utils import softmax

    usable = [c for c in cases if c.positives and len(c.candidates) > 1]
    if not usable:
        raise ValueError("no labelled case with its root cause among the candidates: "
                         "confirm root causes through POST /v1/feedback first")
    torch.manual_seed(seed)
    module = _module(len(signal_names) + len(KIND_GROUPS) + 2, hidden)
    gnn = RootCauseGNN(module, list(signal_names), hidden, {}, onto)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=1e-4)
    if progress is not None:
        progress.start(epochs, "training rca-gnn")
    losses: list[float] = []
    t0 = time.perf_counter()
    x, edge_index, batch, positives = gnn.batch(usable)
    module.train()
    for _ in range(epochs):
        opt.zero_grad()
        logp = torch.log(softmax(module(x, edge_index), batch) + 1e-12)
        # listwise: the mean log-likelihood of each case's root causes, averaged over cases
        per_case = torch.zeros(len(usable)).index_add_(0, batch[positives], logp[positives])
        counts = torch.zeros(len(usable)).index_add_(0, batch[positives],
                                                     torch.ones(len(positives)))
        loss = -(per_case / counts).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress.advance(1)
    module.eval()
    hits = sum(1 for c in usable if int(np.argmax(list(gnn.score(c).values()))) in c.positives)
    gnn.meta = {"model": "graphsage", "signals": list(signal_names), "hidden": hidden,
                "kindGroups": list(KIND_GROUPS), "epochs": epochs, "lr": lr, "seed": seed,
                "cases": len(usable), "skippedCases": len(cases) - len(usable),
                "sources": dict(sources or {}), "trainHits1": round(hits / len(usable), 4),
                "losses": [round(x, 6) for x in losses[:: max(1, epochs // 50)]],
                "createdAt": now_utc().isoformat(),
                "seconds": round(time.perf_counter() - t0, 3), "libraries": library_versions()}
    return gnn


# -- cases from feedback, and the signal for RCA -----------------------------------------------

_LOADED: dict[str, tuple[float, RootCauseGNN]] = {}


def gnn_scores(kg: KnowledgeGraph, candidate_iris: Sequence[str],
               signals: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, float]:
    """The GNN's root-cause likelihood of each candidate in [0, 1] (the most likely has 1),
    from the candidates' RCA signals (``signals[iri][name]``; missing ones count 0) and
    their relations in the snapshot. Empty when no model is trained. The model is loaded
    once per process and reloaded when a newer version becomes current."""
    store = ModelStore(kg.settings.data_dir, MODEL_NAME)
    stamp = store.stamp()
    if not stamp or not candidate_iris:
        return {}
    key = str(store.root)
    cached = _LOADED.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, RootCauseGNN.load(kg.settings.data_dir, kg.onto))
        _LOADED[key] = cached
    gnn = cached[1]
    case = case_from_candidates(kg.snapshot, list(candidate_iris), signals or {},
                                gnn.signal_names)
    return gnn.score(case)


def ranking_metrics(gnn: RootCauseGNN, cases: Sequence[LabelledCase]) -> dict[str, float]:
    """Hits@1 / Hits@3 of the GNN alone on labelled cases (for held-out evaluation)."""
    h1 = h3 = 0
    n = 0
    for c in cases:
        if not c.positives:
            continue
        n += 1
        scores = gnn.score(c)
        order = sorted(range(len(c.candidates)), key=lambda i: -scores[c.candidates[i]])
        h1 += order[0] in c.positives
        h3 += bool(set(order[:3]) & c.positives)
    return {"hits1": h1 / n if n else math.nan, "hits3": h3 / n if n else math.nan,
            "cases": float(n)}
