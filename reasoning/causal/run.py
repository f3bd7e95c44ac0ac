"""Learning causal knowledge from the graph's own event history, end to end.

:func:`learn_from_graph` reads the events of a time range (alerts, alarms, anomalies and
log events with an event type and the resource they are about), the topology between their
resources from the analytic snapshot, learns the causal edges between event types
(:func:`reasoning.causal.learn`) and stores them as ``CausalEdge`` knowledge in ``scope``
(:func:`reasoning.causal.store_edges`), where RCA's ``causal`` signal reads them. Reading
and writing take ``lock`` when one is given (the server's store guard); the learning itself
runs without it, so alerts keep flowing while it works.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from kg.graph import KnowledgeGraph
from reasoning.causal.events import EventTable
from reasoning.causal.graph import events_from_graph, store_edges, topology_from_graph
from reasoning.causal.learn import CausalEdge, LearnConfig, learn


@dataclass
class CausalRun:
    """What one learning run read, found and wrote."""

    scope: str
    events: int
    event_types: int
    entities: int
    links: int
    edges: list[CausalEdge] = field(default_factory=list)
    written: dict[str, Any] | None = None  # the write summary; None for a dry run
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "events": self.events, "eventTypes": self.event_types,
                "entities": self.entities, "links": self.links,
                "direct": sum(e.kind == "direct" for e in self.edges),
                "indirect": sum(e.kind != "direct" for e in self.edges),
                "edges": [{k: v for k, v in asdict(e).items() if k != "bic_unit"}
                          for e in self.edges],
                "written": self.written, "seconds": round(self.seconds, 2)}


def learn_from_graph(kg: KnowledgeGraph, *, scope: str, since: datetime | None = None,
                     until: datetime | None = None, config: LearnConfig | None = None,
                     dry_run: bool = False, lock: threading.Lock | None = None
                     ) -> CausalRun:
    """Learn causal edges from the events in ``[since, until)`` and store them in
    ``scope`` (unless ``dry_run``); raises ValueError when there is nothing to learn from."""
    t0 = time.perf_counter()
    guard = lock or contextlib.nullcontext()
    with guard:
        events = events_from_graph(kg, since=since, until=until)
        topology = topology_from_graph(kg, events.entity_names)
    _check(events)
    edges = learn(events, topology, config or LearnConfig())
    run = CausalRun(scope, len(events), events.n_types, events.n_entities,
                    len(topology.edges), edges)
    if not dry_run:
        with guard:
            summary = store_edges(kg, edges, scope=scope)
        run.written = {"created": summary.created, "updated": summary.updated,
                       "unchanged": summary.unchanged}
    run.seconds = time.perf_counter() - t0
    return run


def _check(events: EventTable) -> None:
    if len(events) == 0:
        raise ValueError("no events to learn from: the graph has no alerts, alarms, anomalies "
                         "or log events with an event type and a resource in that range")
    if events.n_types < 2:
        raise ValueError(f"{len(events)} events of a single type: causal edges need at "
                         "least two event types")
