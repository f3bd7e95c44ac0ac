"""Maximum-likelihood fit of a topological multivariate Hawkes process by EM.

The intensity of events of type ``j`` on entity ``v`` is

    lambda_j,v(t) = mu_j * w_v  +  sum_p theta[j, p] * X_p(t)

with ``X`` the excitation features of :mod:`reasoning.causal.features` (channel = same
entity or a topology relation, scale = one exponential kernel of the bank, parent type).
The background is rank one — a rate per type times an activity per entity (mean 1) — so
that an entity that simply raises many events of every kind does not look like a cause.
The log-likelihood separates over target types once ``w`` is fixed, which the edge tests use.

EM (Lewis & Mohler 2011; the THP paper, Cai et al. 2021, uses the same updates): the E-step
splits every event between the background and the feature terms in proportion to their
intensity; the M-step divides the attributed counts by the compensators. Every step raises
the likelihood; iteration stops when the relative gain falls below ``tol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reasoning.causal.features import Design

_FLOOR = 1e-300


@dataclass
class HawkesFit:
    """Fitted parameters and per-target log-likelihoods."""

    theta: np.ndarray  # (K, P) excitation of each target type by each feature
    mu: np.ndarray  # (K,) background rate per type and entity of activity 1
    w: np.ndarray  # (N,) entity activity, mean 1
    loglik: np.ndarray  # (K,) log-likelihood of each target type's events
    attributed: np.ndarray  # (K, P) expected number of events attributed to each feature
    iterations: int


def fit(design: Design, *, max_iter: int = 500, tol: float = 1e-7,
        on_iteration: Callable[[int], None] | None = None) -> HawkesFit:
    """EM from a neutral start: half of every type's rate to the background;
    ``on_iteration(n)`` is called after each iteration (progress reports)."""
    P, N = design.n_features, design.n_entities
    counts = np.array([len(x) for x in design.X], dtype=np.float64)
    mu = 0.5 * counts / (design.span * N) + _FLOOR
    w = np.ones(N)
    # start each feature at a small rate that together explains ~half of the events
    theta = np.tile(0.5 * counts[:, None] / max(P, 1), (1, P)) / np.maximum(design.G, 1.0)
    theta[:, design.G <= 0] = 0.0
    prev = -np.inf
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        ll, theta, bg = _em_step(design, theta, mu, w)
        mu, w = _background(design, bg, mu, w)
        total = float(ll.sum())
        if on_iteration is not None:
            on_iteration(iterations)
        if np.isfinite(prev) and abs(total - prev) <= tol * abs(total):
            break
        prev = total
    ll, attributed = _loglik(design, theta, mu, w)
    return HawkesFit(theta, mu, w, ll, attributed, iterations)


def refit_target(design: Design, fitted: HawkesFit, j: int, drop: np.ndarray, *,
                 max_iter: int = 200, tol: float = 1e-9) -> float:
    """The maximised log-likelihood of target ``j`` with the features ``drop`` set to 0.

    Warm-started from ``fitted``; the entity activity ``w`` stays fixed (it is shared by
    all types), the type's background rate and the remaining features are re-estimated.
    """
    X, ent, G = design.X[j], design.entity[j], design.G
    theta = fitted.theta[j].copy()
    theta[drop] = 0.0
    mu = float(fitted.mu[j])
    base = fitted.w[ent]
    exposure = design.span * float(fitted.w.sum())
    prev = -np.inf
    ll = prev
    for _ in range(max_iter):
        lam = np.maximum(mu * base + X @ theta, _FLOOR)
        ll = float(np.log(lam).sum() - mu * exposure - theta @ G)
        if np.isfinite(prev) and ll - prev <= tol * abs(ll):
            break
        prev = ll
        inv = 1.0 / lam
        theta = np.where(G > 0, theta * (X.T @ inv) / np.maximum(G, _FLOOR), 0.0)
        mu = mu * float(base @ inv) / exposure
    return ll


def _em_step(design: Design, theta: np.ndarray, mu: np.ndarray, w: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One E+M step of the excitation; returns the log-likelihood before the step, the new
    ``theta`` and each event's background share (for the background update)."""
    G = design.G
    new = np.zeros_like(theta)
    ll = np.zeros(design.n_types)
    bg: list[np.ndarray] = []
    for j in range(design.n_types):
        X, ent = design.X[j], design.entity[j]
        if len(X) == 0:
            bg.append(np.zeros(0))
            continue
        base = mu[j] * w[ent]
        lam = np.maximum(base + X @ theta[j], _FLOOR)
        inv = 1.0 / lam
        ll[j] = np.log(lam).sum() - mu[j] * design.span * w.sum() - theta[j] @ G
        new[j] = np.where(G > 0, theta[j] * (X.T @ inv) / np.maximum(G, _FLOOR), 0.0)
        bg.append(base * inv)
    return ll, new, bg


def _background(design: Design, bg: list[np.ndarray], mu: np.ndarray, w: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """ECM update of the rank-one background from the events' background shares."""
    K, N = design.n_types, design.n_entities
    per_type = np.array([b.sum() for b in bg])
    per_entity = np.zeros(N)
    for j in range(K):
        if len(bg[j]):
            per_entity += np.bincount(design.entity[j], weights=bg[j], minlength=N)
    mu = per_type / (design.span * w.sum()) + _FLOOR
    w = per_entity / (design.span * mu.sum()) + _FLOOR
    scale = w.mean()
    return mu * scale, w / scale


def _loglik(design: Design, theta: np.ndarray, mu: np.ndarray, w: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    ll = np.zeros(design.n_types)
    attributed = np.zeros_like(theta)
    for j in range(design.n_types):
        X, ent = design.X[j], design.entity[j]
        if len(X) == 0:
            continue
        lam = np.maximum(mu[j] * w[ent] + X @ theta[j], _FLOOR)
        ll[j] = np.log(lam).sum() - mu[j] * design.span * w.sum() - theta[j] @ design.G
        attributed[j] = theta[j] * (X.T @ (1.0 / lam))
    return ll, attributed
