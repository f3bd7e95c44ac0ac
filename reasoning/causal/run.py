"""Learning causal knowledge from the graph's own event history, end to end.

:func:`learn_from_graph` reads the events of one scope and time range (alerts, alarms,
anomalies and log events with an event type and the resource they are about), the topology
between their resources from the analytic snapshot, learns the causal edges between event
types (:func:`reasoning.causal.learn`, guided by a :class:`CausalPrior` when one is given or
asserted in the graph) and stores them as ``CausalEdge`` knowledge in the scope
(:func:`reasoning.causal.store_edges`), where RCA's ``causal`` signal reads them. Reading
and writing take ``lock`` when one is given (the server's store guard); the learning itself
runs without it, so alerts keep flowing while it works.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from kg.graph import KnowledgeGraph
from reasoning.causal.graph import (
    EventHistory,
    history_from_graph,
    prior_from_graph,
    store_edges,
    topology_from_graph,
)
from reasoning.causal.learn import EDGE_KINDS, CausalEdge, LearnConfig, ProgressFn, learn
from reasoning.causal.prior import CausalPrior
from reasoning.causal.units import lag_scales, parse_duration

MAX_UNRESOLVED_LISTED = 50  # device names listed in a run's report; the count has them all


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
    unresolved: dict[str, int] = field(default_factory=dict)  # device -> events left out
    prior: int = 0  # pairs of given knowledge
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        listed = dict(list(self.unresolved.items())[:MAX_UNRESOLVED_LISTED])
        return {"scope": self.scope, "events": self.events, "eventTypes": self.event_types,
                "entities": self.entities, "links": self.links,
                "unresolvedEvents": sum(self.unresolved.values()),
                "unresolvedDevices": listed, "priorPairs": self.prior,
                "settings": self.settings,
                "direct": sum(e.kind == "direct" for e in self.edges),
                "indirect": sum(e.kind != "direct" for e in self.edges),
                "edges": [{k: v for k, v in asdict(e).items() if k != "bic_unit"}
                          for e in self.edges],
                "written": self.written, "seconds": round(self.seconds, 2)}


def learn_from_graph(kg: KnowledgeGraph, *, scope: str, since: datetime | None = None,
                     until: datetime | None = None, config: LearnConfig | None = None,
                     prior: CausalPrior | None = None, prior_from_kg: bool = True,
                     all_scopes: bool = False, dry_run: bool = False,
                     lock: threading.Lock | None = None, progress: ProgressFn | None = None
                     ) -> CausalRun:
    """Learn causal edges from the events of ``scope`` (every scope with ``all_scopes``) in
    ``[since, until)`` and store them in ``scope`` (unless ``dry_run``). The prior joins
    ``prior`` with the ``causes`` links asserted in the graph (``prior_from_kg``). Raises
    ValueError when there is nothing to learn from."""
    t0 = time.perf_counter()
    config = config or LearnConfig()
    guard = lock or contextlib.nullcontext()
    with guard:
        history = history_from_graph(kg, scope=None if all_scopes else scope, since=since,
                                     until=until)
        topology = topology_from_graph(kg, history.events.entity_names)
        asserted = prior_from_graph(kg) if prior_from_kg else []
    _check(history, scope, all_scopes)
    given = _join(prior, asserted)
    edges = learn(history.events, topology, config, prior=given, progress=progress)
    events = history.events
    run = CausalRun(scope, len(events), events.n_types, events.n_entities,
                    len(topology.edges), edges, unresolved=history.unresolved,
                    prior=len(given), settings=asdict(config))
    if not dry_run:
        with guard:
            summary = store_edges(kg, edges, scope=scope)
        run.written = {"created": summary.created, "updated": summary.updated,
                       "unchanged": summary.unchanged}
    run.seconds = time.perf_counter() - t0
    return run


def _join(prior: CausalPrior | None, asserted: list[tuple[str, str, str]]) -> CausalPrior:
    if not asserted:
        return prior or CausalPrior()
    return CausalPrior.from_rows([*(prior.to_rows() if prior else []), *asserted],
                                 "prior (given and asserted in the graph)")


def _check(history: EventHistory, scope: str, all_scopes: bool) -> None:
    events = history.events
    where = "in any scope" if all_scopes else f"in scope {scope!r}"
    if len(events) == 0:
        hint = ""
        if history.unresolved:
            names = ", ".join(list(history.unresolved)[:10])
            hint = (f"; {history.unresolved_events} events are on devices the graph does "
                    f"not know ({names}): ingest their topology, or ingest the alarms with "
                    "-o unresolved=reference")
        raise ValueError("no events to learn from: the graph has no alerts, alarms, anomalies "
                         f"or log events with an event type and a resource {where} in that "
                         f"range{hint}")
    if events.n_types < 2:
        raise ValueError(f"{len(events)} events of a single type {where}: causal edges need "
                         "at least two event types")


def config_from(*, lag_min: str | None = None, lag_max: str | None = None,
                kernels: int | None = None, min_lag: str | None = None,
                penalty: float | None = None, min_share: float | None = None,
                edge_kinds: list[str] | None = None) -> LearnConfig:
    """A :class:`LearnConfig` from user settings with units (CLI, API); what is not given
    keeps its default. ValueError names the bad setting."""
    base = LearnConfig()
    changes: dict[str, Any] = {}
    if lag_min is not None or lag_max is not None or kernels is not None:
        lo = parse_duration(lag_min, "lag_min") if lag_min is not None else DEFAULT_LAGS[0]
        hi = parse_duration(lag_max, "lag_max") if lag_max is not None else DEFAULT_LAGS[1]
        changes["scales"] = lag_scales(lo, hi, kernels or len(base.scales))
    if min_lag is not None:
        changes["min_lag"] = parse_duration(min_lag, "min_lag")
    if penalty is not None:
        changes["penalty"] = float(penalty)
    if min_share is not None:
        changes["min_share"] = float(min_share)
    if edge_kinds is not None:
        unknown = [k for k in edge_kinds if k not in EDGE_KINDS]
        if unknown or "direct" not in edge_kinds:
            raise ValueError(f"edge_kinds: {edge_kinds} must name 'direct' and may add "
                             f"'leads-to' (known: {', '.join(EDGE_KINDS)})")
        changes["leads_to"] = "leads-to" in edge_kinds
    return replace(base, **changes)


DEFAULT_LAGS = (3.0, 3000.0)  # seconds: the mean lags of the default kernel bank


class PeriodicProgress:
    """A :data:`ProgressFn` that writes a line per stage and at most every ``every_s``
    seconds within one, through ``write`` (a logger, stderr)."""

    def __init__(self, write: Callable[[str], None], every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.every_s = every_s
        self.clock = clock
        self.stage = ""
        self.last = -float("inf")
        self.started = clock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        if stage != self.stage or now - self.last >= self.every_s:
            self.stage, self.last = stage, now
            self.write(f"causal learning: {STAGES.get(stage, stage)} {done}/{total} "
                       f"({now - self.started:.0f} s)")


STAGES = {"features": "excitation features", "fit": "EM iterations (stops when converged)",
          "tests": "effect types tested"}
