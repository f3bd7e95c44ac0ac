"""The default ranker: root causes ranked by their own evidence of being the origin.

Given the symptoms of an incident, RCA

1. walks the propagation graph (the rules compiled against the snapshot) backwards from
   every symptom entity up to ``max_depth`` hops: the **candidates**, each with its
   strongest rule path to each symptom (its explanation);
2. groups entities that are one **component** in different representations — an
   application ``Service``, the Kubernetes ``Service`` selecting its workload, the
   ``Deployment`` implementing it, its containers (relations :data:`COMPONENT_RELATIONS`) —
   so that a metric on a pod and a call edge between services speak about the same thing;
3. gathers the evidence of every component in reach (:mod:`reasoning.rca.evidence.collect`:
   series judged against a clean reference, events), and scores each candidate component by

       score = origin × chain × (1 + reach_weight × reach) + prior_weight × prior

   - ``origin`` (:func:`reasoning.rca.evidence.origin.origin_scores`): the sum over evidence
     kinds of its deviation that is its own — resource use, span self time, call gap in
     full; latency, errors, alerts only as far as what it depends on does not show them;
   - ``chain``: 1 when a chain of deviating (or unobserved) components links it to a
     symptom, ``chain_floor`` per healthy component in between
     (:func:`reasoning.rca.evidence.origin.chain_factors`);
   - ``reach``: the share of the incident's evidence on what it can impact, itself excluded
     (a root cause explains more than itself);
   - ``prior``: the mean rule-path weight and share of symptoms it reaches — topology, only
     as a tie-breaker among candidates with evidence (``prior_weight`` is tiny): blast
     radius and graph position never outrank evidence, a candidate without evidence gets no
     prior, and the alerting entity is ranked like any other;
4. returns the best ``limit`` components (None: all), each as its representative entity
   (the member with the strongest own evidence, else the one the rules reached first),
   with its members, signals, per-kind evidence (present, normal, unjudged, missing), the
   cited series and events, and its evidence paths.

Every knob is in :class:`OriginConfig`; its defaults were chosen by cross-system validation
(docs/rca.md, "Choosing the defaults") and are the same for every system.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reasoning.rca.engine import Candidate, Evidence, Symptom, _hypothesis, _path_json
from reasoning.rca.evidence.collect import (
    IncidentEvidence,
    LogCount,
    Timing,
    collect,
)
from reasoning.rca.evidence.judge import JudgeConfig
from reasoning.rca.evidence.origin import (
    EntityEvidence,
    KindEvidence,
    chain_factors,
    origin_scores,
    reach_shares,
)
from reasoning.rca.evidence.sources import SeriesSource
from reasoning.rca.reach import walk
from reasoning.rules import PropagationGraph

# Relations that link representations of one component (not a dependency between two).
COMPONENT_RELATIONS = frozenset({"implementedBy", "selects", "manages"})
COMPONENT_KINDS = frozenset({"Container"})  # partOf its pod or workload: the same component
REPORTED_KINDS = ("resource", "latency", "errors", "availability", "self", "gap", "client",
                  "logs", "alert")


@dataclass(frozen=True)
class OriginConfig:
    """The ranker's knobs (module doc); defaults chosen by cross-system validation."""

    max_depth: int = 4
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    timing: Timing = field(default_factory=Timing)
    chain_floor: float = 0.2
    reach_weight: float = 2.0
    prior_weight: float = 1e-3
    alert_z: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.chain_floor <= 1 or self.reach_weight < 0 or self.prior_weight < 0 \
                or self.max_depth < 1 or self.alert_z <= 0:
            raise ValueError("rca: need 0 <= chain_floor <= 1, reach_weight >= 0, "
                             "prior_weight >= 0, max_depth >= 1, alert_z > 0")


@dataclass
class Ranking:
    candidates: list[Candidate]
    total: int  # candidate components before the limit
    evidence: IncidentEvidence


def rank(graph: PropagationGraph, iris: Sequence[str], kinds: Sequence[str],
         index: Mapping[str, int], symptoms: Sequence[Symptom], events: Sequence[Evidence],
         sources: Sequence[SeriesSource], cfg: OriginConfig, *,
         reference: tuple[datetime, datetime] | None = None, limit: int | None = 10,
         log_counts: Sequence[LogCount] = ()) -> Ranking:
    """Ranked root-cause components for ``symptoms`` (see the module doc)."""
    located = [s for s in symptoms if s.entity is not None and s.entity in index]
    if not located:
        return Ranking([], 0, IncidentEvidence())
    W = graph.W
    first = min(s.at for s in symptoms)
    last = max(s.at for s in symptoms)
    # 1. candidates: best rule path from each candidate to each symptom, walking from the
    #    symptom's whole component (an alert on a Kubernetes Service reaches the callees of
    #    the application Service it is one component with)
    expand = _ComponentWalker(graph, kinds)
    reach: dict[int, dict[int, tuple[float, list[int]]]] = {}
    walks: dict[int, dict[int, tuple[float, list[int]]]] = {}
    for s_i, s in enumerate(located):
        component = expand.component(index[str(s.entity)])
        key = min(component)  # one walk per symptom component, from all its members at once
        if key not in walks:
            walks[key] = walk(W, sorted(component), cfg.max_depth)
        for node, (weight, path) in walks[key].items():
            reach.setdefault(node, {})[s_i] = (weight, path)
    # 2. components over the candidates, what they depend on and what they can impact
    universe = _neighbourhood(W, set(reach), cfg.max_depth)
    for n in list(reach):
        universe |= expand.component(n)
    group = _components(graph, kinds, universe)
    members: dict[int, list[int]] = {}
    for n in sorted(universe):
        members.setdefault(group[n], []).append(n)
    # 3. evidence per entity, lifted to components
    stored = {e.iri for e in events}
    ev_in = list(events) + [Evidence(str(s.entity), "Alert", s.at, s.alert or "", 0.0, s.name)
                            for s in located if s.alert is None or s.alert not in stored]
    # (the symptoms deviate too)
    found = collect({iris[n] for n in universe}, sources, (first, last), reference, ev_in,
                    cfg.judge, cfg.timing, cfg.alert_z, log_counts)
    per_entity = {index[iri]: ev for iri, ev in found.entities.items() if iri in index}
    evidence = {g: _merge([per_entity[m] for m in ms if m in per_entity])
                for g, ms in members.items()}
    deps = _component_deps(W, group, members)
    comps = sorted({group[n] for n in reach})
    origin = origin_scores(comps, deps, evidence)
    starts = sorted({group[index[str(s.entity)]] for s in located})
    chain = chain_factors(starts, deps, evidence, cfg.chain_floor, depth=2 * cfg.max_depth)
    shares = reach_shares(comps, deps, evidence, depth=2 * cfg.max_depth)
    # 4. score, rank, explain
    scored = []
    for g in comps:
        o, parts = origin[g]
        cands = [m for m in members[g] if m in reach]
        per_symptom = _best_paths(reach, cands)
        prior = (sum(w for w, _ in per_symptom.values()) / len(located)
                 + len(per_symptom) / len(located)) / 2
        c = chain.get(g, 0.0)
        if o <= 0:
            prior = 0.0  # a tie-breaker among suspects only: no evidence, no rank
        score = o * c * (1 + cfg.reach_weight * shares[g]) + cfg.prior_weight * prior
        scored.append((score, g, o, parts, c, prior, cands, per_symptom))
    scored.sort(key=lambda t: (-t[0], iris[_representative(t[6], per_entity, reach)]))
    out = []
    for score, g, o, parts, c, prior, cands, per_symptom in scored[:limit]:
        rep = _representative(cands, per_entity, reach)
        signals = {"origin": o, "chain": c, "reach": shares[g], "prior": prior,
                   **{f"origin.{k}": v for k, v in parts.items()}}
        contributions = {"evidence": o * c, "reach": o * c * cfg.reach_weight * shares[g],
                         "prior": cfg.prior_weight * prior}
        paths = [_path_json(graph, iris, located[s_i], w, p)
                 for s_i, (w, p) in sorted(per_symptom.items())]
        for explained in paths:  # a walk starts from any member of the symptom's component
            if explained["entities"][-1] != explained["symptom"]:
                explained["symptomVia"] = "component"
        top_kind = max(parts, key=parts.__getitem__) if parts else None
        metrics = [evidence[g].kinds[top_kind].detail] if top_kind in evidence[g].kinds \
            else ["no own evidence: the common cause of deviating dependants"] \
            if top_kind else []
        cand = Candidate(iris[rep], kinds[rep], score, signals, contributions,
                         _hypothesis(graph, per_symptom, rep, metrics), paths,
                         _events_of(events, {iris[m] for m in members[g]}))
        cand.extra = _findings(members[g], iris, evidence[g], found, parts)
        out.append(cand)
    return Ranking(out, len(scored), found)


def component_link(graph: PropagationGraph, kinds: Sequence[str], effect: int, cause: int
                   ) -> bool:
    """Whether ``effect`` and ``cause`` are one component: a container and its pod or
    workload, or a service and the one workload implementing (selecting) it — a service
    implemented by several workloads (clusters, versions) spans several failure domains,
    which stay apart."""
    if kinds[cause] in COMPONENT_KINDS or kinds[effect] in COMPONENT_KINDS:
        return True
    if graph.rule_of[(effect, cause)][1] not in COMPONENT_RELATIONS:
        return False
    W = graph.W
    peers = W.indices[W.indptr[effect]:W.indptr[effect + 1]].tolist()
    return sum(graph.rule_of[(effect, c)][1] in COMPONENT_RELATIONS for c in peers) == 1


class _ComponentWalker:
    """The members of an entity's component: entities linked to it, either way, by
    component relations (module doc), found by following them in the compiled graph."""

    def __init__(self, graph: PropagationGraph, kinds: Sequence[str]) -> None:
        from reasoning.rca.reach import effects_of

        self.graph, self.kinds = graph, kinds
        self.effects = effects_of(graph.W)
        self._seen: dict[int, set[int]] = {}

    def _linked(self, effect: int, cause: int) -> bool:
        return component_link(self.graph, self.kinds, effect, cause)

    def component(self, node: int, limit: int = 64) -> set[int]:
        if node in self._seen:
            return self._seen[node]
        W, E = self.graph.W, self.effects
        found, frontier = {node}, [node]
        while frontier and len(found) < limit:
            nxt = []
            for m in frontier:
                for c in W.indices[W.indptr[m]:W.indptr[m + 1]].tolist():
                    if c not in found and self._linked(m, c):
                        found.add(c)
                        nxt.append(c)
                for e in E.indices[E.indptr[m]:E.indptr[m + 1]].tolist():
                    if e not in found and self._linked(e, m):
                        found.add(e)
                        nxt.append(e)
            frontier = nxt
        for m in found:
            self._seen[m] = found
        return found


def _neighbourhood(W: Any, cands: set[int], depth: int) -> set[int]:
    """The candidates, what they directly depend on, and what they can impact."""
    from reasoning.rca.reach import blast_radii

    universe = set(cands)
    for n in cands:
        universe.update(int(c) for c in W.indices[W.indptr[n]:W.indptr[n + 1]])
    universe |= blast_radii(W, sorted(cands), depth).universe()
    return universe


def _components(graph: PropagationGraph, kinds: Sequence[str], nodes: Collection[int]
                ) -> dict[int, int]:
    """Union-find over component relations among ``nodes``: node -> its component id (the
    smallest member)."""
    parent = {n: n for n in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    W = graph.W
    for effect in nodes:
        for cause in W.indices[W.indptr[effect]:W.indptr[effect + 1]].tolist():
            if cause not in parent:
                continue
            if component_link(graph, kinds, effect, cause):
                a, b = find(effect), find(cause)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {n: find(n) for n in nodes}


def _component_deps(W: Any, group: Mapping[int, int], members: Mapping[int, list[int]]
                    ) -> dict[int, list[int]]:
    """What each component depends on: its members' direct causes, as components."""
    out: dict[int, list[int]] = {}
    for g, ms in members.items():
        found: dict[int, None] = {}
        for m in ms:
            for c in W.indices[W.indptr[m]:W.indptr[m + 1]].tolist():
                cg = group.get(c)
                if cg is not None and cg != g:
                    found[cg] = None
        out[g] = list(found)
    return out


def _merge(evs: Sequence[EntityEvidence]) -> EntityEvidence:
    out = EntityEvidence()
    for ev in evs:
        out.observed |= ev.observed
        out.monitored = out.monitored or ev.monitored
        for k, e in ev.kinds.items():
            out.add(k, ev.role[k], KindEvidence(e.score, e.onset, e.verdict, e.detail))
    return out


def _best_paths(reach: Mapping[int, Mapping[int, tuple[float, list[int]]]],
                cands: Sequence[int]) -> dict[int, tuple[float, list[int]]]:
    best: dict[int, tuple[float, list[int]]] = {}
    for m in cands:
        for s_i, (w, p) in reach[m].items():
            if s_i not in best or w > best[s_i][0]:
                best[s_i] = (w, p)
    return best


def _representative(cands: Sequence[int], per_entity: Mapping[int, EntityEvidence],
                    reach: Mapping[int, Mapping[int, tuple[float, list[int]]]]) -> int:
    """The member that speaks for the component: the strongest evidence other than alerts
    (an alert is a symptom; the member that deviates is the more precise answer), then the
    strongest evidence, then the strongest rule path to a symptom, then the smallest id."""
    def key(m: int) -> tuple[float, float, float, int]:
        ev = per_entity.get(m)
        strength = sum(e.score for e in ev.kinds.values()) if ev else 0.0
        observed = sum(e.score for k, e in ev.kinds.items() if k != "alert") if ev else 0.0
        return (-observed, -strength, -max((w for w, _ in reach[m].values()), default=0.0), m)
    return min(cands, key=key)


def _events_of(events: Sequence[Evidence], entities: Collection[str]) -> list[Evidence]:
    mine = [e for e in events if e.entity in entities and not (
        e.kind == "LogEvent" and e.detail == "template-count")]
    return sorted(mine, key=lambda e: (e.at, e.iri))[:20]


def _findings(members: Sequence[int], iris: Sequence[str], ev: EntityEvidence,
              found: IncidentEvidence, parts: Mapping[str, float]) -> dict[str, Any]:
    """Per evidence kind: present (with its part of the origin score), normal (judged, no
    deviation), unjudged (series that could not be judged, and why) or missing; and the
    deviating series cited."""
    verdicts = [v for m in members for v in found.verdicts.get(iris[m], [])]
    kinds: dict[str, dict[str, Any]] = {}
    for k in REPORTED_KINDS:
        mine = [v for v in verdicts if v.kind.name == k]
        if k in ev.kinds and ev.kinds[k].score > 0:
            kinds[k] = {"status": "present", "score": round(ev.kinds[k].score, 4),
                        "origin": round(parts.get(k, 0.0), 4), "detail": ev.kinds[k].detail}
        elif k in ev.observed:
            kinds[k] = {"status": "normal"}
        elif mine:
            reasons = sorted({f"{v.status}: {v.note}" if v.note else v.status for v in mine})
            kinds[k] = {"status": "unjudged", "series": len(mine), "why": reasons}
        else:
            kinds[k] = {"status": "missing"}
    cited = sorted((v for v in verdicts if v.anomalous), key=lambda v: -v.score)[:10]
    return {"component": [iris[m] for m in members],
            "evidenceKinds": kinds,
            "series": [v.to_json() for v in cited]}
