"""The triples the graph embeddings learn from, taken from the analytic snapshot.

Only current facts (no ``validTo``) between the graph's lasting things: resources,
services, event types, knowledge (runbooks, policies, rules) and incidents. Events (alerts,
anomalies, log events, alarms), metric series, analysis outputs (RCA results, candidates,
evidence paths), feedback, executions and bookkeeping are left out: they are many, short-
lived or derived, and would teach the model the analysis rather than the infrastructure.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence

from kg.snapshot import AnalyticSnapshot
from ontology import Ontology

Triple = tuple[str, str, str]

EXCLUDED_ROOTS = ("Event", "MetricSeries", "RCAResult", "RootCauseCandidate", "EvidencePath",
                  "Feedback", "ActionExecution", "IngestSnapshot", "Agent", "IntentReport")


def included_kinds(onto: Ontology) -> frozenset[str]:
    """Classes whose entities take part (everything not under :data:`EXCLUDED_ROOTS`)."""
    roots = [r for r in EXCLUDED_ROOTS if r in onto.classes]
    return frozenset(c for c in onto.classes
                     if not any(onto.is_subclass(c, r) for r in roots))


def graph_triples(snap: AnalyticSnapshot, onto: Ontology | None = None) -> list[Triple]:
    """``(head, relation, tail)`` of every current relation between included entities,
    sorted (deterministic input for training)."""
    from ontology import load_ontology

    keep = included_kinds(onto or load_ontology())
    ok = {iri for iri, kind, alive in zip(snap.iris, snap.kinds, snap.alive, strict=True)
          if alive and kind in keep}
    return sorted((s, rel, t) for (rel, s, t), valid in snap.edges.items()
                  if valid and s in ok and t in ok)


def split_triples(triples: Sequence[Triple], *, seed: int = 0,
                  ratios: tuple[float, float] = (0.1, 0.1)
                  ) -> tuple[list[Triple], list[Triple], list[Triple]]:
    """Train / validation / test split for link prediction. A triple is held out only
    when its head, relation and tail each keep another triple in training, so every held-
    out triple is predictable in the transductive setting."""
    order = list(triples)
    random.Random(seed).shuffle(order)
    degree: Counter[str] = Counter()
    rel_count: Counter[str] = Counter()
    for h, r, t in order:
        degree[h] += 1
        degree[t] += 1
        rel_count[r] += 1
    want = [int(len(order) * ratios[0]), int(len(order) * ratios[1])]
    held: list[list[Triple]] = [[], []]
    train: list[Triple] = []
    for tr in order:
        h, r, t = tr
        slot = 0 if len(held[0]) < want[0] else 1 if len(held[1]) < want[1] else None
        if slot is not None and degree[h] > 1 and degree[t] > 1 and rel_count[r] > 1 \
                and h != t:
            held[slot].append(tr)
            degree[h] -= 1
            degree[t] -= 1
            rel_count[r] -= 1
        else:
            train.append(tr)
    return sorted(train), sorted(held[0]), sorted(held[1])


def entities_of(triples: Iterable[Triple]) -> list[str]:
    return sorted({x for h, _, t in triples for x in (h, t)})
