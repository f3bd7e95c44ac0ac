"""Known causal knowledge given to the learner: required, forbidden and oriented pairs.

Experts and alarm catalogues know part of the answer: *A causes B* (required), *A never
causes B* (forbidden), or *if A and B are linked, A is the cause* (oriented). The learner
takes such a :class:`CausalPrior` and uses it as knowledge, not as a hint to be outvoted:

* a forbidden pair is never returned and its gain does not count towards the causal order;
* a required or oriented pair constrains the causal order (the cause comes first), so its
  direction — and, through the order, the direction of the pairs around it — follows the
  knowledge; pairs the data contradict are oriented by the knowledge;
* a required pair is always returned (``prior="required"``, confidence 1), with the
  numbers the data give it when it was tested.

As a CSV file (UTF-8, header required; extra columns ignored)::

    cause,effect,kind
    ALM-LOS,ALM-LINK-DOWN,required
    ALM-TEMP,ALM-LOS,forbidden
    ALM-POWER,ALM-LOS,oriented

``kind`` defaults to ``required``. Event types are named as in the event table (names or
IRIs). A prior whose required and oriented pairs form a cycle, or that both requires and
forbids a pair, raises :class:`reasoning.causal.events.CausalInputError`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasoning.causal.events import CausalInputError

KINDS = ("required", "forbidden", "oriented")
PRIOR_COLUMNS = ("cause", "effect", "kind")


@dataclass(frozen=True)
class CausalPrior:
    """Pairs of event-type names, each a (cause, effect) tuple."""

    required: frozenset[tuple[str, str]] = frozenset()
    forbidden: frozenset[tuple[str, str]] = frozenset()
    oriented: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]], where: str = "prior"
                  ) -> CausalPrior:
        """Build from ``(cause, effect, kind)`` rows; checks kinds, self pairs, conflicts."""
        sets: dict[str, set[tuple[str, str]]] = {k: set() for k in KINDS}
        for n, row in enumerate(rows, 1):
            a, b, kind = _checked(row, f"{where} row {n}")
            sets[kind].add((a, b))
        clash = sets["forbidden"] & sets["required"]
        if clash:
            raise CausalInputError(where, f"pairs both required and forbidden: {sorted(clash)}")
        prior = cls(frozenset(sets["required"]), frozenset(sets["forbidden"]),
                    frozenset(sets["oriented"]))
        prior.check_acyclic(where)
        return prior

    def __bool__(self) -> bool:
        return bool(self.required or self.forbidden or self.oriented)

    def __len__(self) -> int:
        return len(self.required) + len(self.forbidden) + len(self.oriented)

    @property
    def directed(self) -> frozenset[tuple[str, str]]:
        """The pairs whose direction is known: required and oriented."""
        return self.required | self.oriented

    def pairs(self) -> frozenset[tuple[str, str]]:
        """Every pair the prior speaks about, in both directions (what a benchmark that
        gives this prior must leave out of its score)."""
        every = self.required | self.forbidden | self.oriented
        return frozenset(every | {(b, a) for a, b in every})

    def check_acyclic(self, where: str = "prior") -> None:
        names = sorted({x for pair in self.directed for x in pair})
        code = {n: i for i, n in enumerate(names)}
        children: list[list[int]] = [[] for _ in names]
        for a, b in self.directed:
            children[code[a]].append(code[b])
        if constrained_order(list(range(len(names))), children) is None:
            raise CausalInputError(where, "the required and oriented pairs form a cycle")

    def to_rows(self) -> list[tuple[str, str, str]]:
        return sorted([(a, b, "required") for a, b in self.required]
                      + [(a, b, "forbidden") for a, b in self.forbidden]
                      + [(a, b, "oriented") for a, b in self.oriented])


def read_prior_csv(path: str | Path) -> CausalPrior:
    """Read a prior CSV (columns ``cause,effect[,kind]``); errors name file and line."""
    path = Path(path)
    rows: list[tuple[str, str, str]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in PRIOR_COLUMNS[:2] if c not in header]
        if missing:
            raise CausalInputError(f"{path} line 1", f"missing column(s) {missing}; "
                                   f"expected {list(PRIOR_COLUMNS)}")
        reader.fieldnames = header
        for n, row in enumerate(reader, 2):
            rows.append(_checked((row.get("cause") or "", row.get("effect") or "",
                                  row.get("kind") or ""), f"{path} line {n}"))
    return CausalPrior.from_rows(rows, str(path))


def _checked(row: tuple[str, str, str], at: str) -> tuple[str, str, str]:
    cause, effect, kind = row
    kind = (kind or "required").strip()
    if kind not in KINDS:
        raise CausalInputError(at, f"kind {kind!r} is not one of {', '.join(KINDS)}")
    a, b = str(cause or "").strip(), str(effect or "").strip()
    if not a or not b:
        raise CausalInputError(at, "cause and effect must not be empty")
    if a == b:
        raise CausalInputError(at, f"{a!r} -> itself: a pair needs two event types")
    return a, b, kind


def order_constraints(prior: CausalPrior, names: Sequence[str]) -> list[list[int]]:
    """Per type index, the indices that must come after it (required and oriented pairs
    between types present in ``names``)."""
    code = {n: i for i, n in enumerate(names)}
    after: list[list[int]] = [[] for _ in names]
    for a, b in sorted(prior.directed):
        if a in code and b in code:
            after[code[a]].append(code[b])
    return after


def constrained_order(preferred: list[int], after: list[list[int]]) -> list[int] | None:
    """The order closest to ``preferred`` in which every ``after`` constraint holds: a
    topological sort that always places the available type that comes first in
    ``preferred``. None when the constraints form a cycle."""
    rank = np.empty(len(preferred), dtype=np.int64)
    rank[preferred] = np.arange(len(preferred))
    indeg = np.zeros(len(preferred), dtype=np.int64)
    for children in after:
        for c in children:
            indeg[c] += 1
    ready = sorted((v for v in preferred if indeg[v] == 0), key=lambda v: rank[v])
    out: list[int] = []
    while ready:
        v = ready.pop(0)
        out.append(v)
        for c in after[v]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
        ready.sort(key=lambda v: rank[v])
    return out if len(out) == len(preferred) else None
