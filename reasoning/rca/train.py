"""Fitting RCA signal weights from labelled incidents.

An :class:`Example` is one analysed incident: the signals of every candidate (a matrix,
rows = candidates, columns = :data:`reasoning.rca.engine.SIGNALS`) and which candidate was
the true root cause. :func:`fit_weights` finds non-negative weights ``w`` that make the
true cause score highest, with the listwise (conditional-logit) ranking loss

    L(w) = Σ_incidents [ log Σ_j exp(s_j) − s_true ] / n  +  λ ‖w‖²,    s_j = w · signals_j

minimised by L-BFGS-B with bounds ``w >= 0`` (a signal can only add evidence; this keeps
the weights readable as each signal's share of the score). The loss is the negative log
likelihood that the softmax over candidates picks the true cause, so it aims at top-1.
Incidents whose true cause is not among the candidates cannot be learned from and are
skipped. Only the signals enter: nothing identifies a node, so weights transfer to other
graphs. The result is a :class:`reasoning.rca.engine.Weights`, saved with
``Weights.save(path, **meta)`` where :class:`reasoning.rca.RCAService` loads it from
(``<data dir>/models/rca-weights.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from reasoning.rca.engine import SIGNALS, Candidate, Weights

DEFAULT_L2 = 0.01


@dataclass(frozen=True)
class Example:
    """One labelled incident: candidate signals and the index of the true cause (or None
    when it was not a candidate)."""

    entities: tuple[str, ...]
    signals: np.ndarray  # (candidates, len(SIGNALS))
    truth: int | None
    group: str = ""

    @classmethod
    def of(cls, candidates: Sequence[Candidate], truth: str, group: str = "") -> Example:
        entities = tuple(c.entity for c in candidates)
        x = np.array([[c.signals.get(s, 0.0) for s in SIGNALS] for c in candidates],
                     dtype=np.float64).reshape(len(candidates), len(SIGNALS))
        return cls(entities, x, entities.index(truth) if truth in entities else None, group)


def scores(example: Example, weights: Weights) -> np.ndarray:
    w = np.array([weights.values.get(s, 0.0) for s in SIGNALS])
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
    keep = np.array([s not in exclude for s in SIGNALS]) & informative
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
    full = np.zeros(len(SIGNALS))
    full[keep] = res.x
    return Weights({s: round(float(v), 6) for s, v in zip(SIGNALS, full, strict=True)}, source)
