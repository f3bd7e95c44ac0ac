"""Learned causal knowledge: which event types cause which, along topology and time.

``learn(events, topology, config)`` fits a topological Hawkes process to an event table
(time, event type, entity) on an entity topology and returns the significant cause ->
effect edges between event types (:class:`CausalEdge`); :func:`store_edges` writes them
into the graph as ``CausalEdge`` knowledge, :func:`events_from_graph` and
:func:`topology_from_graph` read the learner's input back from the graph. The method, the
formats and the calibration are described in docs/causal.md.
"""

from reasoning.causal.events import (
    CausalInputError,
    EventTable,
    Topology,
    read_events_csv,
    read_topology_csv,
    write_events_csv,
    write_topology_csv,
)
from reasoning.causal.graph import events_from_graph, store_edges, topology_from_graph
from reasoning.causal.learn import (
    EDGE_KINDS,
    METHOD,
    CausalEdge,
    LearnConfig,
    learn,
    select_edges,
)
from reasoning.causal.prior import CausalPrior, read_prior_csv

__all__ = [
    "EDGE_KINDS",
    "METHOD",
    "CausalEdge",
    "CausalInputError",
    "CausalPrior",
    "EventTable",
    "LearnConfig",
    "Topology",
    "events_from_graph",
    "learn",
    "read_events_csv",
    "read_prior_csv",
    "read_topology_csv",
    "select_edges",
    "store_edges",
    "topology_from_graph",
    "write_events_csv",
    "write_topology_csv",
]
