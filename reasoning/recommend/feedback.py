"""Feedback: operators' judgements stored as facts, and the success rates learnt from them.

Two kinds of feedback, each one ``Feedback`` fact with provenance (``givenBy`` an
``Agent``, ``generatedAt``, source ``feedback/api:{scope}``):

- ``rootCause``: the confirmed (``accepted`` true) or rejected root cause of an incident —
  ``feedbackOn`` the incident and the entity; the root-cause GNN learns from these;
- ``recommendation``: a recommended runbook or policy was applied, and whether it
  succeeded (``accepted``) — ``feedbackOn`` the incident (if any) and the runbook/policy;
  ``attributes.context`` keeps the alert names of the problem.

:class:`SuccessStats` turns recommendation feedback — and the outcomes of action
executions that ``followsPlan`` / ``followsPolicy`` — into success rates: a Beta(1, 1)
prior per item, updated online by each outcome, and per (alert name, item) a rate that
shrinks towards the item's overall rate (``strength`` pseudo-observations), so a runbook
that worked for this alert before ranks higher for it next time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kg.facts import Entity, FactBatch, Relation, now_utc
from ontology import mint_iri
from reasoning.recommend.query import BadQuery, QueryNotFound

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

FEEDBACK_QUERY = (
    "MATCH (f:Entity)-[:feedbackOn]->(t:Entity) WHERE f.kind = 'Feedback' "
    "AND f.validTo IS NULL RETURN f.iri, f.method, f.accepted, f.attributes, t.iri, t.kind")
EXECUTION_QUERY = (
    "MATCH (x:Entity)-[:{rel}]->(t:Entity) WHERE x.kind = 'ActionExecution' "
    "AND x.outcome IN ['succeeded', 'failed', 'rolledBack'] AND (x.dryRun IS NULL OR "
    "x.dryRun = false) RETURN x.iri, x.outcome, t.iri")
INCIDENT_ALERT_NAMES = (
    "MATCH (a:Entity)-[:partOfIncident]->(i:Entity {iri: $inc}) RETURN DISTINCT a.name")
ITEM_KINDS = frozenset({"OperationPlan", "RemediationPolicy"})


@dataclass
class Rate:
    value: float  # posterior mean success probability
    successes: int
    failures: int
    context: str | None  # the alert name whose record was used, None for the overall rate


@dataclass
class SuccessStats:
    """Beta–Bernoulli success rates per item and per (context, item)."""

    prior: tuple[float, float] = (1.0, 1.0)
    strength: float = 2.0  # pseudo-observations of the overall rate in a context's rate
    overall: dict[str, list[int]] = field(default_factory=dict)
    by_context: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def observe(self, item: str, succeeded: bool, contexts: Iterable[str] = ()) -> None:
        slot = 0 if succeeded else 1
        self.overall.setdefault(item, [0, 0])[slot] += 1
        for c in set(contexts):
            self.by_context.setdefault((c, item), [0, 0])[slot] += 1

    def rate(self, item: str, contexts: Sequence[str] = ()) -> Rate | None:
        """The item's success rate in the best-known of ``contexts`` (else overall); None
        when it has no recorded outcome at all."""
        s, f = self.overall.get(item, (0, 0))
        if not s + f:
            return None
        a, b = self.prior
        overall = (s + a) / (s + f + a + b)
        best, seen = Rate(overall, s, f, None), 0
        for c in contexts:  # the context with the longest record speaks
            cs, cf = self.by_context.get((c, item), (0, 0))
            if cs + cf > seen:
                seen = cs + cf
                best = Rate((cs + self.strength * overall) / (cs + cf + self.strength),
                            cs, cf, c)
        return best

    @classmethod
    def load(cls, kg: KnowledgeGraph) -> SuccessStats:
        """Rebuild from the stored feedback and action executions."""
        stats = cls()
        rows = kg.store.query(FEEDBACK_QUERY, max_rows=1_000_000).rows
        by_fb: dict[str, dict[str, Any]] = {}
        for f, method, accepted, attrs, target, kind in rows:
            rec = by_fb.setdefault(f, {"method": method, "accepted": accepted,
                                       "attrs": attrs, "items": []})
            if kind in ITEM_KINDS:
                rec["items"].append(target)
        for rec in by_fb.values():
            if rec["method"] != "recommendation" or rec["accepted"] is None:
                continue
            context = _json(rec["attrs"]).get("context") or []
            for item in rec["items"]:
                stats.observe(item, bool(rec["accepted"]), context)
        for rel in ("followsPlan", "followsPolicy"):
            for _x, outcome, item in kg.store.query(EXECUTION_QUERY.format(rel=rel),
                                                    max_rows=1_000_000).rows:
                stats.observe(item, outcome == "succeeded")
        return stats


def _json(raw: Any) -> dict[str, Any]:
    try:
        doc = json.loads(str(raw)) if raw else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# -- writing feedback -------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedbackInput:
    """One judgement: a root cause (confirmed or rejected), or an applied recommendation
    and whether it succeeded."""

    kind: Literal["rootCause", "recommendation"]
    target: str  # the root-cause entity, or the runbook / policy
    accepted: bool  # root cause confirmed / recommendation succeeded
    incident: str | None = None
    agent: str = "operator"
    comment: str | None = None
    context: tuple[str, ...] = ()  # alert names of the problem (default: the incident's)
    scope: str = "default"


@dataclass
class StoredFeedback:
    iri: str
    context: list[str]


def write_feedback(kg: KnowledgeGraph, fb: FeedbackInput) -> StoredFeedback:
    """Check the referenced facts exist and write the feedback; returns its IRI and the
    context it was stored with."""
    wanted = [fb.target] + ([fb.incident] if fb.incident else [])
    found, _ = kg.store.fetch(wanted, [])
    if fb.incident and (fb.incident not in found or found[fb.incident].kind != "Incident"):
        raise QueryNotFound(f"no incident {fb.incident} in the graph")
    target = found.get(fb.target)
    if target is None:
        raise QueryNotFound(f"no entity {fb.target} in the graph")
    if fb.kind == "recommendation" and target.kind not in ITEM_KINDS:
        raise BadQuery("recommendation", f"{fb.target} is a {target.kind}, not a runbook "
                       "(OperationPlan) or a RemediationPolicy")
    if fb.kind == "rootCause" and not kg.onto.is_subclass(target.kind, "Resource"):
        raise BadQuery("rootCause", f"{fb.target} is a {target.kind}, not a resource")
    context = list(fb.context)
    if not context and fb.incident:
        context = sorted({n for (n,) in kg.store.query(
            INCIDENT_ALERT_NAMES, {"inc": fb.incident}).rows if n})
    now = now_utc()
    base = kg.settings.iri_base
    source = f"feedback/api:{fb.scope}"
    digest = hashlib.sha1(f"{fb.kind}\x1f{fb.incident}\x1f{fb.target}".encode()).hexdigest()
    iri = mint_iri(fb.scope, "Feedback", f"{digest[:16]}-{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                   base)
    agent = mint_iri(fb.scope, "Agent", fb.agent, base)
    ents = [
        Entity(agent, "Agent", {"name": fb.agent}, source),
        Entity(iri, "Feedback", {"method": fb.kind, "accepted": fb.accepted,
                                 "reason": fb.comment, "generatedAt": now,
                                 "attributes": json.dumps({"context": context})}, source,
               valid_from=now),
    ]
    rels = [Relation("feedbackOn", iri, fb.target, {}, source),
            Relation("givenBy", iri, agent, {}, source)]
    if fb.incident:
        rels.append(Relation("feedbackOn", iri, fb.incident, {}, source))
    kg.write(FactBatch.of(source, ents, rels))
    return StoredFeedback(iri, context)


CONFIRMED_ROOT_CAUSES = (
    "MATCH (f:Entity)-[:feedbackOn]->(i:Entity) WHERE f.kind = 'Feedback' AND "
    "f.method = 'rootCause' AND i.kind = 'Incident' AND f.validTo IS NULL "
    "MATCH (f)-[:feedbackOn]->(x:Entity) WHERE x.kind <> 'Incident' "
    "RETURN i.iri, x.iri, f.accepted, f.generatedAt")


def confirmed_root_causes(kg: KnowledgeGraph) -> dict[str, tuple[set[str], set[str]]]:
    """Per incident: the entities confirmed as its root cause and those rejected (the
    latest judgement of each entity counts)."""
    latest: dict[tuple[str, str], tuple[Any, bool]] = {}
    for inc, x, accepted, at in kg.store.query(CONFIRMED_ROOT_CAUSES, max_rows=1_000_000).rows:
        key = (inc, x)
        if key not in latest or (at is not None and (latest[key][0] is None
                                                     or at > latest[key][0])):
            latest[key] = (at, bool(accepted))
    out: dict[str, tuple[set[str], set[str]]] = {}
    for (inc, x), (_, ok) in latest.items():
        pos, neg = out.setdefault(inc, (set(), set()))
        (pos if ok else neg).add(x)
    return out
