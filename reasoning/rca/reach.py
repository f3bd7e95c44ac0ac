"""Walks over the propagation graph ``W[effect, cause]`` for RCA: best rule paths backwards
from a symptom (:func:`walk`) and every candidate's blast radius forwards
(:func:`blast_radii`).

Both cost in proportion to the part of the graph the incident reaches, not to the graph:
the walk follows CSR rows from the symptom; the radii are sparse boolean products over the
candidates' rows, with the transposed graph (``effects[cause, effect]``) computed once per
compiled graph and reused across analyses (:func:`effects_of`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# id(W) -> (W, nnz it was computed at, effects); entries leave with their W
_EFFECTS: dict[int, tuple[weakref.ref[sp.csr_matrix], int, sp.csr_matrix]] = {}


def effects_of(W: sp.csr_matrix) -> sp.csr_matrix:
    """``W``'s pattern transposed (``effects[cause, effect]``, boolean), cached per matrix.

    A compiled graph only grows in place by :meth:`scipy.sparse.csr_matrix.resize` (new
    entities that no rule links yet, see ``RCAService.propagation_graph``), which keeps its
    entries: the cached transpose is then resized too, not recomputed."""
    key = id(W)
    hit = _EFFECTS.get(key)
    # (a live referent under W's id is W: ids are unique among live objects)
    if hit is None or hit[0]() is None or hit[1] != W.nnz:
        effects: sp.csr_matrix = (W.T.tocsr() != 0).tocsr()
        _EFFECTS[key] = (weakref.ref(W), W.nnz, effects)
        weakref.finalize(W, _EFFECTS.pop, key, None)
        return effects
    effects = hit[2]
    if effects.shape != W.shape:
        effects.resize(W.shape)
    return effects


def walk(W: sp.csr_matrix, start: int | Sequence[int], depth: int,
         factors: Mapping[int, float] | None = None, default: float = 0.0
         ) -> dict[int, tuple[float, list[int]]]:
    """Entities that can impact ``start`` within ``depth`` rule hops: best weight + path
    (``[cause, ..., start]``); ``start`` itself with weight 1. With ``factors``, a path's
    weight is instead the product of the factors of the entities between a cause and
    ``start`` (missing ones count ``default``): how anomalous the chain linking them is.
    Several starts (the members of one component) walk together: each path ends at one."""
    starts = [start] if isinstance(start, int) else list(dict.fromkeys(start))
    best: dict[int, tuple[float, list[int]]] = {s: (1.0, [s]) for s in starts}
    origin = set(starts)
    frontier = list(starts)
    indptr, indices, data = W.indptr, W.indices, W.data
    for _ in range(depth):
        nxt: list[int] = []
        for effect in frontier:
            w_e, path = best[effect]
            if factors is not None and effect not in origin:
                w_e *= factors.get(effect, default)
            lo, hi = indptr[effect], indptr[effect + 1]
            for cause, w in zip(indices[lo:hi].tolist(), data[lo:hi].tolist(), strict=True):
                weight = w_e * (w if factors is None else 1.0)
                old = best.get(cause)
                if old is None or weight > old[0]:
                    best[cause] = (weight, [cause, *path])
                    nxt.append(cause)
        frontier = nxt
        if not frontier:
            break
    return best


@dataclass(frozen=True)
class BlastRadii:
    """Each candidate's blast radius (itself and what it can impact within the depth), as
    the rows of a boolean sparse matrix ``reach[row, entity]``."""

    rows: dict[int, int]  # candidate -> its row
    reach: sp.csr_matrix

    def size(self, node: int) -> int:
        """How many entities the radius of ``node`` holds (itself included)."""
        row = self.rows[node]
        return int(self.reach.indptr[row + 1] - self.reach.indptr[row])

    def widest(self) -> int:
        """The largest radius, its candidate excluded (at least 1)."""
        return max(1, int(np.diff(self.reach.indptr).max(initial=1)) - 1)

    def universe(self) -> set[int]:
        """Every entity in some radius (the candidates included)."""
        return set(np.unique(self.reach.indices).tolist())

    def members(self, entities: Sequence[int]) -> dict[int, list[int]]:
        """Per candidate, which of ``entities`` (sorted) its radius holds, in that order."""
        out: dict[int, list[int]] = {node: [] for node in self.rows}
        if not entities:
            return out
        cols = np.asarray(entities, dtype=np.int64)
        sub = self.reach[:, cols].tocsr()
        sub.sort_indices()
        for node, row in self.rows.items():
            out[node] = cols[sub.indices[sub.indptr[row]:sub.indptr[row + 1]]].tolist()
        return out


def blast_radii(W: sp.csr_matrix, candidates: Sequence[int], depth: int) -> BlastRadii:
    """Every candidate's blast radius at once, as sparse boolean products (``R ← R + R·E``
    per hop, ``E = effects_of(W)``), instead of one breadth-first walk per candidate."""
    n = W.shape[0]
    cand = np.asarray(candidates, dtype=np.int64)
    reach = sp.csr_matrix((np.ones(len(cand), dtype=bool), (np.arange(len(cand)), cand)),
                          shape=(len(cand), n))
    effects = effects_of(W)
    for _ in range(depth):
        grown = (reach + reach @ effects).tocsr()
        if grown.nnz == reach.nnz:
            break
        reach = grown
    return BlastRadii({int(c): i for i, c in enumerate(cand.tolist())}, reach)
