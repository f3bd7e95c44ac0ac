"""Fitting RCA signal weights from labelled incidents.

An :class:`Example` is one analysed incident: the signals of every candidate (a matrix,
rows = candidates, columns = :data:`reasoning.rca.engine.SIGNALS`) and which candidate was
the true root cause (``names`` says which signals the columns are: the engine's, or those
plus learned ones such as ``gnn``, see :mod:`reasoning.rca.learned`). :func:`fit_weights`
finds non-negative weights ``w`` that make the true cause score highest, with the listwise
(conditional-logit) ranking loss

    L(w) = Σ_incidents [ log Σ_j exp(s_j) − s_true ] / n  +  λ ‖w‖²,    s_j = w · signals_j

minimised by L-BFGS-B with bounds ``w >= 0`` (a signal can only add evidence; this keeps
the weights readable as each signal's share of the score). The loss is the negative log
likelihood that the softmax over candidates picks the true cause, so it aims at top-1.
Incidents whose true cause is not among the candidates cannot be learned from and are
skipped. Only the signals enter: nothing identifies a node, so weights transfer to other
graphs. The result is a :class:`reasoning.rca.engine.Weights`, saved with
``Weights.save(path, **meta)`` where :class:`reasoning.rca.RCAService` loads it from
(``<data dir>/models/rca-weights.json``).

Learned signals (:mod:`reasoning.rca.learned`) are judged the same way, on labelled
incidents only: :func:`validate_gnn` holds out one group of incidents at a time (e.g. a
scenario family of the benchmark's train split), fits the weights and trains the GNN on the
others, and compares the held-out ranks with and without the GNN fused; the fusion weight
is fitted on the out-of-group GNN scores (stacking), so it never sees a score the GNN made
on its own training incidents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize

from reasoning.rca.engine import SIGNALS, Candidate, Weights

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from ontology import Ontology
    from reasoning.embeddings.gnn import LabelledCase, RootCauseGNN

DEFAULT_L2 = 0.01


@dataclass(frozen=True)
class Example:
    """One labelled incident: candidate signals and the index of the true cause (or None
    when it was not a candidate)."""

    entities: tuple[str, ...]
    signals: np.ndarray  # (candidates, len(names))
    truth: int | None
    group: str = ""
    names: tuple[str, ...] = SIGNALS  # the signal of each column

    @classmethod
    def of(cls, candidates: Sequence[Candidate], truth: str, group: str = "",
           names: Sequence[str] = SIGNALS) -> Example:
        entities = tuple(c.entity for c in candidates)
        x = np.array([[c.signals.get(s, 0.0) for s in names] for c in candidates],
                     dtype=np.float64).reshape(len(candidates), len(names))
        return cls(entities, x, entities.index(truth) if truth in entities else None, group,
                   tuple(names))

    def with_signal(self, name: str, values: Sequence[float]) -> Example:
        """This example with one more signal column (e.g. a learned score per candidate)."""
        col = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        return Example(self.entities, np.hstack([self.signals, col]), self.truth, self.group,
                       (*self.names, name))


def scores(example: Example, weights: Weights) -> np.ndarray:
    w = np.array([weights.values.get(s, 0.0) for s in example.names])
    return example.signals @ w


def rank_with(example: Example, weights: Weights) -> int | None:
    """1-based rank of the true cause under ``weights``, ties against it (as
    :func:`reasoning.rca.engine.rank_of`); None when it is not a candidate."""
    if example.truth is None:
        return None
    s = scores(example, weights)
    return int(np.sum(s >= s[example.truth]))


def fit_weights(examples: Sequence[Example], *, l2: float = DEFAULT_L2,
                exclude: Sequence[str] = (), source: str = "fitted") -> Weights:
    """Non-negative weights minimising the listwise ranking loss (see the module doc);
    signals in ``exclude``, and those equal for all candidates of every incident (nothing
    to learn from), get weight 0."""
    usable = [e for e in examples if e.truth is not None and len(e.entities) > 1]
    if not usable:
        raise ValueError("no example has its true cause among two or more candidates")
    # a signal that never differs between the candidates of an incident cannot rank them
    informative = np.any([np.ptp(e.signals, axis=0) > 1e-12 for e in usable], axis=0)
    names = usable[0].names
    if any(e.names != names for e in usable):
        raise ValueError("the examples have different signal columns")
    keep = np.array([s not in exclude for s in names]) & informative
    mats = [e.signals[:, keep] for e in usable]
    truths = [int(e.truth) for e in usable if e.truth is not None]
    n = len(usable)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for x, t in zip(mats, truths, strict=True):
            s = x @ w
            m = s.max()
            p = np.exp(s - m)
            z = p.sum()
            total += m + np.log(z) - s[t]
            grad += (p / z) @ x - x[t]
        return total / n + l2 * float(w @ w), grad / n + 2 * l2 * w

    w0 = np.ones(int(keep.sum()))
    res = minimize(loss, w0, jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * len(w0))
    full = np.zeros(len(names))
    full[keep] = res.x
    return Weights({s: round(float(v), 6) for s, v in zip(names, full, strict=True)}, source)


# -- learned signals: the root-cause GNN on top of the fitted weights ---------------------------

def top_k(example: Example, weights: Weights, k: int) -> list[int]:
    """Indices of the ``k`` best candidates under ``weights`` (ties by IRI), as RCA returns
    them (``RCAConfig.max_candidates``)."""
    s = scores(example, weights)
    return sorted(range(len(s)), key=lambda i: (-s[i], example.entities[i]))[:k]


def gnn_training_cases(examples: Sequence[Example], cases: Sequence[LabelledCase],
                       weights: Weights, k: int) -> list[LabelledCase]:
    """The GNN's inputs for labelled incidents: each incident's top ``k`` candidates under
    ``weights`` (what RCA hands the learned stage) with their relations and the truth."""
    return [c.subset(top_k(e, weights, k)) for e, c in zip(examples, cases, strict=True)]


def fused_ranks(examples: Sequence[Example], cases: Sequence[LabelledCase], weights: Weights,
                gnn: RootCauseGNN | None, weight: float, k: int) -> list[int | None]:
    """Rank of each true cause (ties against it) among the top ``k`` candidates under
    ``weights`` after fusing ``weight ×`` the GNN's score (None: not among them)."""
    out: list[int | None] = []
    for e, c in zip(examples, cases, strict=True):
        keep = top_k(e, weights, k)
        s = scores(e, weights)[keep]
        if gnn is not None and weight:
            sub = c.subset(keep)
            g = gnn.score(sub)
            s = s + weight * np.array([g[x] for x in sub.candidates])
        t = keep.index(e.truth) if e.truth in keep else None
        out.append(None if t is None else int(np.sum(s >= s[t])))
    return out


@dataclass
class GNNValidation:
    """Leave-one-group-out validation of the GNN signal on labelled incidents: ranks of the
    true causes with the base signals (weights refitted without the group) and with the GNN
    (trained without the group) fused at the weight fitted on the out-of-group scores."""

    groups: list[str]
    base: list[int | None]
    fused: list[int | None]
    fused_unit: list[int | None]  # fused at weight 1
    weight: float  # the fusion weight fitted on the out-of-group GNN scores (0: no use)


def validate_gnn(examples: Sequence[Example], cases: Sequence[LabelledCase], onto: Ontology,
                 *, k: int = 10, epochs: int = 150, seed: int = 0) -> GNNValidation:
    """Cross-validate the GNN as a learned signal, one group (``Example.group``) held out at
    a time: fit the weights and train the GNN on the other groups, score the held-out
    incidents. The fusion weight is then fitted (listwise, as :func:`fit_weights`) on all
    out-of-group scores, with the base score as the other column; it is what the signal is
    worth relative to the base signals, and 0 when it adds nothing."""
    from reasoning.embeddings.gnn import train_gnn

    groups = sorted({e.group for e in examples})
    if len(groups) < 2:
        raise ValueError(f"validation needs two or more groups of incidents, got {groups}")
    order, base, stacked, models = [], [], [], []
    for g in groups:
        fit_on = [i for i, e in enumerate(examples) if e.group != g]
        held = [i for i, e in enumerate(examples) if e.group == g]
        w = fit_weights([examples[i] for i in fit_on])
        gnn = train_gnn(gnn_training_cases([examples[i] for i in fit_on],
                                           [cases[i] for i in fit_on], w, k),
                        onto, epochs=epochs, seed=seed)
        for i in held:
            keep = top_k(examples[i], w, k)
            sub = cases[i].subset(keep)
            g_scores = gnn.score(sub)
            e = examples[i]
            x = np.column_stack([scores(e, w)[keep], [g_scores[c] for c in sub.candidates]])
            truth = keep.index(e.truth) if e.truth in keep else None
            stacked.append(Example(tuple(sub.candidates), x, truth, g, ("base", "gnn")))
            order.append(i)
            models.append((w, gnn))
        base += fused_ranks([examples[i] for i in held], [cases[i] for i in held], w, None,
                            0.0, k)
    fusion = fit_weights(stacked).values if any(s.truth is not None for s in stacked) else {}
    weight = fusion.get("gnn", 0.0) / fusion["base"] if fusion.get("base") else 0.0
    fused, unit = [], []
    for i, (w, gnn) in zip(order, models, strict=True):
        fused += fused_ranks([examples[i]], [cases[i]], w, gnn, weight, k)
        unit += fused_ranks([examples[i]], [cases[i]], w, gnn, 1.0, k)
    return GNNValidation([examples[i].group for i in order], base, fused, unit,
                         round(weight, 6))


def feedback_cases(kg: KnowledgeGraph, max_candidates: int = 50) -> tuple[list[LabelledCase],
                                                                          int]:
    """Cases of incidents whose root cause was confirmed in feedback: their symptoms are
    analysed again; returns the cases and how many incidents had no usable analysis."""
    from reasoning.embeddings.gnn import case_from_candidates
    from reasoning.rca import RCAConfig, RCAService
    from reasoning.rca.learned import LearnedSettings
    from reasoning.recommend.feedback import confirmed_root_causes

    # base signals only: the GNN learns from the weighted-signal ranker's signals (its
    # features), not from its own
    svc = RCAService(kg, config=RCAConfig(max_candidates=max_candidates),
                     learned=LearnedSettings(), ranker="signals")
    cases, missing = [], 0
    snap = kg.snapshot
    for incident, (confirmed, _rejected) in sorted(confirmed_root_causes(kg).items()):
        if not confirmed:
            continue
        symptoms = svc.symptoms_of_incident(incident)
        if not symptoms:
            missing += 1
            continue
        result = svc.analyse(symptoms)
        cands = [c.entity for c in result.candidates]
        case = case_from_candidates(snap, cands, {c.entity: c.signals
                                                  for c in result.candidates},
                                    truth=sorted(confirmed))
        if case.positives:
            cases.append(case)
        else:
            missing += 1
    return cases, missing
