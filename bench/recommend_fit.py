"""Fitting the recommender's signal weights on recorded signals, and scoring them held out.

A :class:`Query` is one benchmark question: the signal matrix of every runbook (from
:meth:`reasoning.recommend.Recommender.signals`), the runbooks' names and IRIs (the
ranker's tie order) and the index of the right answer. Scores are fused exactly as
:func:`reasoning.recommend.ranker.rank` does (a weighted sum; no feedback here), so a weight
vector fitted here ranks the same inside the engine.

:func:`fit` is coordinate ascent over a grid of weights on the mean reciprocal rank (ties
by Hits@1; a weight moves only when that improves), ``lexical`` fixed at 1 (the scale is
free). :func:`fit_logit`, the alternative measured beside it, maximises the likelihood of
the answers under a softmax over each query's runbooks (non-negative, L2-penalised). Held-out
figures come from folds of runbooks: every query of a runbook is in the same fold, the
weights are fitted on the other folds and score only the held-out one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
L2 = 0.01
FITTED = ("title", "expressionTerms", "semantic", "entityTypes", "metrics", "family",
          "similarAlerts")


@dataclass(frozen=True)
class Query:
    signals: np.ndarray  # signals x items
    order: np.ndarray  # tie rank of each item (by name, then IRI)
    answer: int
    group: str  # the answer runbook (fold unit)
    family: str  # its folder


def rank_of(q: Query, w: np.ndarray) -> int:
    score = w @ q.signals
    mine = score[q.answer]
    ahead = (score > mine) | ((score == mine) & (q.order < q.order[q.answer]))
    return int(ahead.sum()) + 1


def summary(ranks: Sequence[int]) -> dict[str, float]:
    r = np.asarray(ranks, dtype=float)
    if not r.size:
        return {"hits1": 0.0, "hits3": 0.0, "mrr": 0.0}
    return {"hits1": float(np.mean(r == 1)), "hits3": float(np.mean(r <= 3)),
            "mrr": float(np.mean(1.0 / r))}


def _objective(queries: Sequence[Query], w: np.ndarray) -> tuple[float, float]:
    s = summary([rank_of(q, w) for q in queries])
    return s["mrr"], s["hits1"]


def fit(queries: Sequence[Query], names: Sequence[str], start: dict[str, float],
        rounds: int = 4) -> dict[str, float]:
    """Weights maximising MRR on ``queries`` (coordinate ascent over :data:`GRID`)."""
    w = np.array([start.get(k, 0.0) for k in names])
    w[names.index("lexical")] = 1.0
    best = _objective(queries, w)
    for _ in range(rounds):
        improved = False
        for k in FITTED:
            if k not in names:
                continue
            idx = names.index(k)
            for value in GRID:
                if value == w[idx]:
                    continue
                trial = w.copy()
                trial[idx] = value
                got = _objective(queries, trial)
                if got > best:
                    best, w, improved = got, trial, True
        if not improved:
            break
    return {k: float(v) for k, v in zip(names, w, strict=True)}


def fit_logit(queries: Sequence[Query], names: Sequence[str], start: dict[str, float],
              l2: float = L2) -> dict[str, float]:
    """Weights of the signals in :data:`FITTED` (and ``lexical``) maximising the softmax
    likelihood of the answers, ``l2``-penalised, scaled to ``lexical`` = 1."""
    from scipy.optimize import minimize

    free = [names.index(k) for k in ("lexical", *FITTED) if k in names]
    mats = [q.signals[free] for q in queries]

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(x)
        for m, q in zip(mats, queries, strict=True):
            z = x @ m
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
            total -= np.log(max(p[q.answer], 1e-300))
            grad -= m[:, q.answer] - m @ p
        n = len(queries)
        return total / n + l2 * float(x @ x), grad / n + 2 * l2 * x

    x0 = np.array([max(start.get(names[i], 0.0), 0.0) + 1.0 for i in free])
    res = minimize(loss, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(free))
    w = dict.fromkeys(names, 0.0)
    scale = res.x[0] if res.x[0] > 0 else 1.0
    for i, v in zip(free, res.x, strict=True):
        w[names[i]] = round(float(v / scale), 3)
    return w


Fit = Callable[[Sequence[Query], Sequence[str], dict[str, float]], dict[str, float]]


def held_out(queries: Sequence[Query], names: Sequence[str], start: dict[str, float],
             fold_of: Callable[[Query], str], fitter: Fit = fit
             ) -> tuple[list[int], dict[str, dict[str, float]]]:
    """Each query ranked by weights fitted without its fold; the ranks (in query order)
    and the weights of each fold."""
    folds = sorted({fold_of(q) for q in queries})
    ranks = [0] * len(queries)
    weights: dict[str, dict[str, float]] = {}
    for fold in folds:
        train = [q for q in queries if fold_of(q) != fold]
        w = fitter(train, names, start)
        weights[fold] = w
        vec = np.array([w[k] for k in names])
        for i, q in enumerate(queries):
            if fold_of(q) == fold:
                ranks[i] = rank_of(q, vec)
    return ranks, weights


def group_folds(queries: Sequence[Query], k: int) -> Callable[[Query], str]:
    """``k`` folds of runbooks, assigned round-robin in sorted order (deterministic)."""
    groups = sorted({q.group for q in queries})
    fold = {g: f"fold {i % k + 1}" for i, g in enumerate(groups)}
    return lambda q: fold[q.group]
