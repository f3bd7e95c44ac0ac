"""Origin scores: how much of an entity's evidence is its own, not inherited.

A fault shows first where it is, then travels to what depends on it: a slow callee makes
its callers slow, an overloaded node its pods. So an entity's deviation counts as evidence
*that it is the origin* only as far as its own dependencies do not show it too — the
anomaly-traversal criterion, graded — while deviations no dependency can cause (its CPU,
its spans' exclusive time, the gap its callers see before it answers) count in full
(:mod:`reasoning.rca.evidence.kinds`).

Per entity and kind, the evidence is the strongest timely verdict score of that kind
(:class:`KindEvidence`). The origin score is the sum over kinds of

- own kinds: the evidence;
- propagating kinds: the evidence times ``1 - explained``, where ``explained`` is the
  largest ratio (capped at 1) to its own of a dependency's evidence (a direct one, or one
  behind dependencies that nothing observes) of any harmful kind (a slow or saturated
  callee times its callers out, a failing one fails them), counting only dependencies
  whose onset is not later than its own (an effect does not precede its cause), or of the
  entity's own waiting time (client-side latency: it was slow because it waited on
  something);
- the call gap, an own kind measured between a caller's client span and the callee's
  server span, is explained in the same way by a caller's own deviation (self time,
  resource use: a CPU-starved caller delays its client spans as much as the network does);
- waiting and neutral kinds: nothing.

Every kind weighs the same: there are no per-system weights.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reasoning.rca.evidence.judge import Verdict

# What can cause a propagating deviation when a dependency shows it: any harmful deviation
# (a slow or saturated callee times its callers out, a failing one fails them).
ANY = ("resource", "self", "gap", "latency", "errors", "availability", "logs", "alert")
EXPLAINED_BY: dict[str, tuple[str, ...]] = {}  # kind -> its explaining kinds (default ANY)
SELF_EXPLAINED_BY: dict[str, tuple[str, ...]] = {"latency": ("client",)}
# A call gap is measured between a caller's client span and the callee's server span: a
# caller starved of CPU delays it as much as the network does, so the caller's own
# deviation explains its callees' gaps.
CALLER_EXPLAINS: dict[str, tuple[str, ...]] = {"gap": ("self", "resource")}


@dataclass
class KindEvidence:
    """One entity's evidence of one kind: its strongest verdict (after timeliness)."""

    score: float
    onset: datetime | None
    verdict: Verdict | None = None  # None for evidence from events
    detail: str = ""


@dataclass
class EntityEvidence:
    kinds: dict[str, KindEvidence] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)  # kind -> own | propagating
    observed: set[str] = field(default_factory=set)  # kinds with a judged series
    monitored: bool = False  # some series is about it (judged or not)

    def add(self, kind: str, role: str, ev: KindEvidence) -> None:
        self.role[kind] = role
        old = self.kinds.get(kind)
        if old is None or ev.score > old.score:
            self.kinds[kind] = ev

    def own(self) -> float:
        return sum(e.score for k, e in self.kinds.items() if self.role[k] == "own")


def timeliness(lag_s: float, before_s: float, early_scale_s: float, late_scale_s: float
               ) -> float:
    """1 for an onset from ``before_s`` before the first symptom up to it; decaying with
    ``early_scale_s`` for earlier onsets (a condition that predates the incident) and with
    ``late_scale_s`` for later ones."""
    if lag_s > 0:
        return math.exp(-lag_s / late_scale_s)
    early = -lag_s - before_s
    return 1.0 if early <= 0 else math.exp(-early / early_scale_s)


def origin_scores(nodes: Collection[int], deps: Mapping[int, Sequence[int]],
                  evidence: Mapping[int, EntityEvidence], min_shared: int = 2,
                  min_share: float = 0.5) -> dict[int, tuple[float, dict[str, float]]]:
    """Per node: its origin score and each kind's part of it (see the module doc).

    An entity that nothing observes (no series, no event) cannot show evidence, but it can
    be the **common cause** of what it impacts: when at least ``min_shared`` of its direct
    dependants deviate in a way nothing else they depend on explains, and they are at least
    ``min_share`` of its dependants, it explains their propagating deviations in that share,
    and its own score (kind ``inferred``) is that share times their mean unexplained
    evidence — a link nobody monitors under every service routed over it. (A caller slowed
    by a slow callee is explained by the callee, so it does not make their common host a
    suspect.)"""
    dependants: dict[int, list[int]] = {}
    for m, cs in deps.items():
        for c in cs:
            dependants.setdefault(c, []).append(m)
    seen_through = _Through(deps, evidence)
    first = {n: _origin(n, seen_through, dependants, evidence, {})
             for n in set(nodes) | set(deps)}
    common: dict[int, float] = {}  # unobserved entity -> share of its dependants deviating
    for c, ds in dependants.items():
        ev = evidence.get(c)
        if ev is not None and (ev.observed or ev.kinds or ev.monitored):
            continue  # something watches it: what it shows (or not) is what we know
        sick = [d for d in ds if first.get(d, (0.0, {}))[0] > 0]
        if len(sick) >= min_shared and len(sick) / len(ds) >= min_share:
            common[c] = len(sick) / len(ds)
    out: dict[int, tuple[float, dict[str, float]]] = {}
    for n in nodes:
        if n in common:
            sick = [d for d in dependants[n] if first.get(d, (0.0, {}))[0] > 0]
            inferred = common[n] * sum(first[d][0] for d in sick) / len(sick)
            out[n] = (inferred, {"inferred": inferred})
        else:
            out[n] = _origin(n, seen_through, dependants, evidence, common) if common \
                else first[n]
    return out


class _Through:
    """What an entity depends on, looking through dependencies that nothing observes (no
    series, no events): they pass a fault on unchanged, so a symptom two hops from its cause
    through an unmonitored router is explained by the cause. An unobserved dependency is
    kept too (it may be a common cause)."""

    def __init__(self, deps: Mapping[int, Sequence[int]],
                 evidence: Mapping[int, EntityEvidence], depth: int = 4) -> None:
        self.deps, self.evidence, self.depth = deps, evidence, depth
        self._memo: dict[int, list[int]] = {}

    def silent(self, c: int) -> bool:
        ev = self.evidence.get(c)
        return ev is None or not (ev.observed or ev.kinds)

    def get(self, n: int, default: Sequence[int] = ()) -> list[int]:
        if n in self._memo:
            return self._memo[n]
        found: dict[int, None] = {}
        seen = {n}
        frontier = list(self.deps.get(n, default))
        for _ in range(self.depth):
            nxt: list[int] = []
            for c in frontier:
                if c in seen:
                    continue
                seen.add(c)
                found[c] = None
                if self.silent(c):
                    nxt.extend(self.deps.get(c, ()))
            frontier = nxt
            if not frontier:
                break
        self._memo[n] = list(found)
        return self._memo[n]


def _origin(n: int, deps: _Through, dependants: Mapping[int, Sequence[int]],
            evidence: Mapping[int, EntityEvidence], common: Mapping[int, float]
            ) -> tuple[float, dict[str, float]]:
    ev = evidence.get(n)
    if ev is None or not ev.kinds:
        return 0.0, {}
    parts: dict[str, float] = {}
    for kind, mine in ev.kinds.items():
        if mine.score <= 0 or ev.role[kind] not in ("own", "propagating"):
            continue
        if ev.role[kind] == "own":
            by = CALLER_EXPLAINS.get(kind, ())
            explained = _explained(mine, [evidence.get(d) for d in dependants.get(n, ())
                                          if d != n], by)
            parts[kind] = mine.score * (1.0 - explained)
            continue
        explained = max((min(1.0, e.score / mine.score) for k, e in ev.kinds.items()
                         if k in SELF_EXPLAINED_BY.get(kind, ())), default=0.0)
        others = []
        for c in deps.get(n, ()):
            if c in common:
                explained = max(explained, common[c])
            elif c != n:
                others.append(evidence.get(c))
        explained = max(explained, _explained(mine, others, EXPLAINED_BY.get(kind, ANY)))
        parts[kind] = mine.score * (1.0 - explained)
    return sum(parts.values()), parts


def _explained(mine: KindEvidence, others: Sequence[EntityEvidence | None],
               by: Collection[str]) -> float:
    """The largest ratio (capped at 1) of another entity's evidence of the kinds ``by`` to
    ``mine``, counting only evidence whose onset is not later than ``mine``'s."""
    best = 0.0
    for other in others:
        if other is None:
            continue
        for k, e in other.kinds.items():
            if k in by and e.score > 0 and (mine.onset is None or e.onset is None
                                            or e.onset <= mine.onset):
                best = max(best, min(1.0, e.score / mine.score))
    return best


def chain_factors(starts: Collection[int], deps: Mapping[int, Sequence[int]],
                  evidence: Mapping[int, EntityEvidence], floor: float, depth: int = 6
                  ) -> dict[int, float]:
    """Per entity reachable from ``starts`` (the symptoms) along ``deps``: how well a chain
    of deviating entities links it to a symptom — the best product over the entities
    between them of 1 for one with evidence (or that nothing observes) and ``floor`` for an
    observed one without. A fault reaches a symptom through what it degrades on the way; a
    deviation linked to the symptom only through healthy entities is someone else's."""
    def passes(m: int) -> float:
        ev = evidence.get(m)
        if ev is None or not ev.observed:
            return 1.0
        return 1.0 if any(e.score > 0 for k, e in ev.kinds.items()
                          if ev.role.get(k) != "neutral") else floor
    best: dict[int, float] = {s: 1.0 for s in starts}
    frontier = list(starts)
    for _ in range(depth):
        nxt = []
        for m in frontier:
            through = best[m] * (passes(m) if m not in starts else 1.0)
            for c in deps.get(m, ()):
                if through > best.get(c, 0.0):
                    best[c] = through
                    nxt.append(c)
        frontier = nxt
        if not frontier:
            break
    return best


def reach_shares(nodes: Collection[int], deps: Mapping[int, Sequence[int]],
                 evidence: Mapping[int, EntityEvidence], depth: int = 6) -> dict[int, float]:
    """Per node: the share of the incident's evidence (every entity's summed non-neutral
    evidence) that lies on what it can impact — its dependants, transitively — itself
    excluded. A root cause explains more than itself: the entities its fault reaches
    deviate too (parsimony: one cause for many deviations). Computed from the deviating
    entities (few) towards what they depend on, not from every candidate."""
    strength = {m: sum(e.score for k, e in ev.kinds.items() if ev.role.get(k) != "neutral")
                for m, ev in evidence.items()}
    total = sum(strength.values())
    out = dict.fromkeys(nodes, 0.0)
    if total <= 0:
        return out
    for m, v in strength.items():
        if v <= 0:
            continue
        seen = {m}
        frontier = [m]
        for _ in range(depth):
            frontier = [c for x in frontier for c in deps.get(x, ()) if c not in seen]
            seen.update(frontier)
            if not frontier:
                break
        for c in seen:
            if c != m and c in out:
                out[c] += v
    return {n: v / total for n, v in out.items()}
