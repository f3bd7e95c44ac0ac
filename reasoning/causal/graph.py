"""The learner and the knowledge graph: event history in, causal knowledge out.

* :func:`events_from_graph` reads the event table from the graph's events — every
  ``Alert``, ``Alarm``, ``Anomaly`` or ``LogEvent`` with a time (``eventTime``, else
  ``startTime``), an event type (``instanceOf`` an EventType, or ``hasTemplate`` a log
  template) and the resource it is about (``aboutEntity``). Event types and entities are
  identified by IRI. Events of other kinds, without a type, entity or time are skipped.
* :func:`topology_from_graph` takes the adjacency between those resources from the analytic
  snapshot (currently valid relations, any type, labelled with the relation type).
* :func:`store_edges` writes each learned edge as a ``CausalEdge`` entity (IRI
  ``mint_iri(scope, "CausalEdge", "{cause}->{effect}")``; ``confidence``, ``support``,
  ``weight``, ``lagSeconds``, ``viaRelation``, ``method``) with ``causeType`` and
  ``effectType`` relations to the event types, plus the short form ``cause -causes-> effect``
  carrying the same numbers. An indirect ("leads to") edge is a ``CausalEdge`` too, with
  ``method`` ``{METHOD}/leads-to``, its path in ``name`` (``a => b => c``) and the hops'
  channels in ``viaRelation``, but without the short form: ``causes`` is a direct link.
  Event types named by IRI are referenced as they are; plain names
  are minted as entities of ``type_class`` (e.g. ``AlarmType``) in the scope. Edges of an
  earlier run of the same scope that were not learned again are retired (``validTo``), never
  deleted; storing the same edges again changes nothing but ``lastSeen``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from kg.facts import Entity, FactBatch, Relation, now_utc, utc
from kg.graph import KnowledgeGraph
from kg.store import WriteSummary
from ontology import mint_iri
from reasoning.causal.events import EventTable, Topology
from reasoning.causal.learn import METHOD, CausalEdge

LEADS_TO_METHOD = f"{METHOD}/leads-to"  # the `method` of indirect ("leads to") edges

EVENT_CLASSES = ("Alert", "Alarm", "Anomaly", "LogEvent")

_EVENTS_QUERY = (
    "MATCH (e:Entity)-[:{rel}]->(t:Entity) MATCH (e)-[:aboutEntity]->(r:Entity) "
    "WHERE e.kind IN $kinds RETURN e.iri, t.iri, r.iri, e.eventTime, e.startTime"
)


def events_from_graph(kg: KnowledgeGraph, *, since: datetime | None = None,
                      until: datetime | None = None,
                      kinds: Sequence[str] = EVENT_CLASSES) -> EventTable:
    """The event table of the graph's events (optionally those in ``[since, until)``)."""
    lo = utc(since).timestamp() if since else None
    hi = utc(until).timestamp() if until else None
    seen: dict[str, tuple[float, str, str]] = {}
    for rel in ("instanceOf", "hasTemplate"):
        res = kg.store.query(_EVENTS_QUERY.format(rel=rel), {"kinds": list(kinds)},
                             max_rows=10_000_000)
        for iri, etype, entity, event_time, start_time in res.rows:
            when = event_time or start_time
            if when is None or iri in seen:
                continue
            t = utc(when).timestamp()
            if (lo is not None and t < lo) or (hi is not None and t >= hi):
                continue
            seen[iri] = (t, etype, entity)
    rows = sorted(seen.values())
    return EventTable.from_rows(rows)


def topology_from_graph(kg: KnowledgeGraph, entities: Iterable[str]) -> Topology:
    """Valid relations of the analytic snapshot between the given entities (by IRI)."""
    wanted = set(entities)
    snap = kg.snapshot
    edges = [(s, t, rel) for (rel, s, t), valid in snap.edges.items()
             if valid and s in wanted and t in wanted]
    return Topology.from_edges(edges)


def store_edges(kg: KnowledgeGraph, edges: Sequence[CausalEdge], *, scope: str,
                type_class: str = "EventType", as_of: datetime | None = None
                ) -> WriteSummary:
    """Write ``edges`` as causal knowledge in ``scope``; retire the scope's stale edges."""
    source = f"causal/{METHOD}:{scope}"
    entities: dict[str, Entity] = {}
    relations: list[Relation] = []
    current: set[str] = set()
    indirect: set[str] = set()

    def type_iri(name: str) -> str:
        if "://" in name:
            return name
        iri = mint_iri(scope, type_class, name)
        entities.setdefault(iri, Entity(iri, type_class, {"name": name}))
        return iri

    for e in edges:
        cause, effect = type_iri(e.cause), type_iri(e.effect)
        iri = mint_iri(scope, "CausalEdge", f"{e.cause}->{e.effect}")
        current.add(iri)
        numbers = {"confidence": round(e.confidence, 6), "support": e.support,
                   "weight": round(e.weight, 6), "lagSeconds": round(e.lag_seconds, 3)}
        direct = e.kind == "direct"
        name = (f"{_label(e.cause)} -> {_label(e.effect)}" if direct else
                " => ".join(_label(t) for t in e.path or (e.cause, e.effect)))
        entities[iri] = Entity(iri, "CausalEdge", {
            **numbers, "viaRelation": e.via, "method": METHOD if direct else LEADS_TO_METHOD,
            "name": name})
        relations += [Relation("causeType", iri, cause), Relation("effectType", iri, effect)]
        if direct:  # `causes` is the direct link; an indirect edge has no short form
            relations.append(Relation("causes", cause, effect, numbers))
        else:
            indirect.add(iri)
    retired_at = utc(as_of) if as_of else None
    for iri, cause, effect, method in _stored_edges(kg, source):
        if iri in current and not (iri in indirect and method == METHOD):
            continue
        when = retired_at or now_utc()
        if iri not in current:
            entities[iri] = Entity(iri, "CausalEdge", {}, valid_to=when)
        if method == METHOD:  # it had the direct short form: retire that too
            relations.append(Relation("causes", cause, effect, {}, valid_to=when))
    return kg.write(FactBatch.of(source, entities.values(), relations))


def _stored_edges(kg: KnowledgeGraph, source: str) -> list[tuple[str, str, str, str]]:
    res = kg.store.query(
        "MATCH (c:Entity)-[:causeType]->(a:Entity) MATCH (c)-[:effectType]->(b:Entity) "
        "WHERE c.source = $source AND c.validTo IS NULL RETURN c.iri, a.iri, b.iri, c.method",
        {"source": source}, max_rows=1_000_000)
    return [(str(c), str(a), str(b), str(m)) for c, a, b, m in res.rows]


def _label(name: str) -> str:
    return name.rsplit("/", 1)[-1] if "://" in name else name
