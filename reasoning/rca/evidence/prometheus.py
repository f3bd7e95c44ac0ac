"""Series of an incident pulled from the operator's Prometheus (source ``prometheus``).

Given the incident's entities (IRIs) and a time range, :class:`PrometheusSeries`:

1. reads each entity's kind from the analytic snapshot and its scope and natural key from
   its IRI (``{base}{scope}/{Kind}/{key}``, :func:`ontology.mint_iri`);
2. builds the label matchers that name it, the inverse of label resolution
   (:mod:`ingest.resolve`): a Pod by ``pod`` and ``namespace``; a workload by its label
   and its pods' names; a Service by ``service`` or ``job``; a node by ``node``, by the
   host of ``instance`` (``instance=~"name(:port)?"``) or by ``host``/``hostname``; each
   label also under the operator's names of the setting ``prometheus_label_map``;
3. asks ``/api/v1/series`` which series match in the range, resolves each one's labels with
   the same :class:`ingest.resolve.Resolver` that metrics ingest uses (from the snapshot:
   no store round trip) and keeps only those that land on the requested entities, at most
   ``prometheus_max_series``, shared out round-robin so every entity gets its share;
4. pulls their samples with ``/api/v1/query_range`` every ``prometheus_step_s`` seconds
   (several series per query; the step widened where the range would need more than
   11,000 points), up to now at the latest (the injected clock), and returns them with
   ``key`` = the series' selector.

It never raises for data it cannot get: a Prometheus that does not answer, a refused query,
a cut at a bound, an entity unknown to the graph all become lines of
:attr:`SeriesFetch.problems`. Built by :meth:`PrometheusSeries.from_settings` (None when
``prometheus_url`` is not set). It reads the snapshot, so call it where reading the snapshot
is safe (the server: under its request guard); the HTTP calls need nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote

import numpy as np

from ingest.resolve import SUBJECT_LABELS, TARGET_METRICS, Resolver
from kg.facts import now_utc
from kg.prometheus import (
    MAX_POINTS,
    PrometheusClient,
    PrometheusError,
    PrometheusUnavailable,
    quote,
    selector,
)
from ontology.iri import slug
from reasoning.rca.evidence.sources import SeriesData, SeriesFetch, SeriesRef

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

T = TypeVar("T")
NAME = "prometheus"
SELECTORS_PER_CALL = 100  # match[] selectors of one /api/v1/series call
SERIES_PER_QUERY = 50  # series of one query_range call (``a or b or ...``)
NODE_KINDS = ("KubernetesNode", "ComputeNode")
NETWORK_KINDS = ("Router", "Switch", "NetworkNode")
SERVICE_KINDS = ("Service", "KubernetesService")
# Prometheus' own records of its alerts: they come in as alerts, not as evidence
NOT_ALERTS = '__name__!~"ALERTS|ALERTS_FOR_STATE"'
# Pods of a workload by name, as resolution infers them (ingest.resolve)
_POD_OF = {"Deployment": "{}-[a-z0-9]{{5,10}}-[a-z0-9]{{5}}", "StatefulSet": "{}-[0-9]+",
           "DaemonSet": "{}-[a-z0-9]{{5}}"}


@dataclass(frozen=True)
class EntityRef:
    """What an IRI says of its entity: ``{base}{scope}/{kind}/{key}``."""

    iri: str
    scope: str
    kind: str
    key: str


def entity_ref(iri: str, kind: str, base: str) -> EntityRef | None:
    """Scope and key of ``iri`` minted by the IRI rule with ``base`` and ``kind``; None for
    an IRI of another rule."""
    base = base if base.endswith(("/", "#")) else base + "/"
    if not iri.startswith(base):
        return None
    head, _, key = iri[len(base):].rpartition("/")
    scope, _, kind_part = head.rpartition("/")
    if not scope or kind_part != slug(kind) or not key:
        return None
    return EntityRef(iri, unquote(scope), kind, unquote(key))


class Matchers:
    """PromQL matchers for the labels resolution reads, under the operator's names too."""

    def __init__(self, label_map: Mapping[str, str]) -> None:
        self.names: dict[str, list[str]] = {}
        for source, target in label_map.items():
            self.names.setdefault(target, [target]).append(source)

    def names_of(self, label: str) -> list[str]:
        return self.names.get(label, [label])

    def equal(self, label: str, value: str) -> list[str]:
        """One matcher per name of ``label`` (alternatives: one selector each)."""
        return [f"{n}={quote(value)}" for n in self.names_of(label)]

    def regex(self, label: str, pattern: str) -> list[str]:
        return [f"{n}=~{quote(pattern)}" for n in self.names_of(label)]

    def absent(self, *labels: str) -> list[str]:
        """Matchers that hold when none of ``labels`` is set (under any of their names)."""
        return [f'{n}=""' for label in labels for n in self.names_of(label)]

    def optional(self, label: str, value: str) -> list[str]:
        """``label`` is ``value`` or absent; nothing when the operator has other names for
        it (then resolution alone decides: a pre-filter only saves work)."""
        if len(self.names_of(label)) > 1:
            return []
        return [f"{label}=~{quote(re.escape(value) + '|')}"]


def selectors_for(ref: EntityRef, m: Matchers) -> list[str]:
    """The series selectors that may name ``ref`` (resolution decides which do)."""
    ns, _, name = ref.key.rpartition("/")
    ns = ns or "default"
    in_ns = m.optional("namespace", "default") if ns == "default" else \
        m.equal("namespace", ns)[:1] if len(m.names_of("namespace")) == 1 else []
    scoped = m.optional("cluster", ref.scope)
    no_subject = m.absent(*SUBJECT_LABELS)
    alternatives: list[list[str]] = []  # each: a matcher of the entity's name; + constraints
    if ref.kind == "Pod":
        alternatives = [[x, *in_ns] for x in m.equal("pod", name)]
    elif ref.kind in _POD_OF:
        pods = _POD_OF[ref.kind].format(re.escape(name))
        alternatives = [[x, *in_ns] for x in m.equal(ref.kind.lower(), name)
                        + m.regex("pod", pods)]
        if ref.kind == "Deployment":
            alternatives += [[x, *in_ns] for x in m.regex(
                "replicaset", re.escape(name) + "-[a-z0-9]{5,10}")]
    elif ref.kind == "Namespace":
        alternatives = [[x, *m.absent(*SUBJECT_LABELS[:6])] for x in m.equal("namespace",
                                                                               ref.key)]
    elif ref.kind == "KubernetesCluster":
        alternatives = [[x, *m.absent(*SUBJECT_LABELS[:7])] for x in m.equal("cluster",
                                                                               ref.key)]
        scoped = []
    elif ref.kind in SERVICE_KINDS:
        if ref.kind == "KubernetesService" and ns != "default":
            return []  # resolution reaches a KubernetesService only in "default"
        alternatives = [[x, *no_subject] for x in m.equal("service", name)
                        + m.equal("job", name)]
    elif ref.kind in NODE_KINDS + NETWORK_KINDS:
        host = re.escape(ref.key)
        if ":" in ref.key:  # IPv6: [addr]:port or the bare address
            host = rf"\[{host}\]|{host}"
        alternatives = [[x, *no_subject] for x in m.regex("instance", f"({host})(:[0-9]+)?")
                        + m.equal("host", ref.key) + m.equal("hostname", ref.key)]
        if ref.kind in NODE_KINDS:
            alternatives = [[x] for x in m.equal("node", ref.key)] + alternatives
    return ["{" + ",".join([*a, *scoped, NOT_ALERTS]) + "}" for a in alternatives]


class PrometheusSeries:
    """A :class:`reasoning.rca.evidence.sources.SeriesSource` over a live Prometheus."""

    name = NAME

    def __init__(self, kg: KnowledgeGraph, client: PrometheusClient, *, step_s: float,
                 max_series: int, label_map: Mapping[str, str] | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self.kg = kg
        self.client = client
        self.step_s = step_s
        self.max_series = max_series
        self.matchers = Matchers(label_map or {})
        self.clock = clock

    @classmethod
    def from_settings(cls, kg: KnowledgeGraph) -> PrometheusSeries | None:
        """The source for ``kg.settings.prometheus_url``; None when it is not set."""
        s = kg.settings
        if not s.prometheus_url:
            return None
        return cls(kg, PrometheusClient.from_settings(s), step_s=s.prometheus_step_s,
                   max_series=s.prometheus_max_series, label_map=s.prometheus_label_map)

    def close(self) -> None:
        self.client.close()

    def fetch(self, entities: Collection[str], start: datetime, end: datetime
              ) -> SeriesFetch:
        out = SeriesFetch()
        # A range query evaluates every step up to ``end``, repeating a series' last sample
        # for up to 5 minutes (the lookback): steps after now would be no samples at all.
        end = min(end, self.clock())
        if end < start:
            return out
        try:
            found = self._matching(self._refs(entities, out), start, end, out)
            kept = self._bounded(found, out)
            self._samples(kept, start, end, out)
        except PrometheusError as exc:  # not reachable, credentials, a refused lookup
            out.problems.append(f"{NAME}: {exc}")
        return out

    # -- the stages --------------------------------------------------------------------------
    def _refs(self, entities: Collection[str], out: SeriesFetch) -> list[EntityRef]:
        snap = self.kg.snapshot
        base = self.kg.settings.iri_base
        refs, unknown = [], []
        for iri in dict.fromkeys(entities):
            i = snap.index.get(iri)
            ref = entity_ref(iri, snap.kinds[i], base) if i is not None and \
                snap.alive[i] and snap.kinds[i] else None
            if ref is None:
                unknown.append(iri)
            else:
                refs.append(ref)
        if unknown:
            out.problems.append(f"{NAME}: {len(unknown)} entities are not in the graph (or "
                                f"not of its IRI rule); nothing asked for them: "
                                f"{', '.join(unknown[:5])}" + (" ..." if len(unknown) > 5
                                                               else ""))
        return refs

    def _matching(self, refs: Sequence[EntityRef], start: datetime, end: datetime,
                  out: SeriesFetch) -> dict[str, list[dict[str, str]]]:
        """Entity IRI -> the series (label sets) that resolve to it, in selector order."""
        by_scope: dict[str, list[EntityRef]] = {}
        for ref in refs:
            by_scope.setdefault(ref.scope, []).append(ref)
        resolver = Resolver.in_memory(self.kg)
        wanted = {r.iri for r in refs}
        found: dict[str, list[dict[str, str]]] = {r.iri: [] for r in refs}
        for scope, group in by_scope.items():
            sels = list(dict.fromkeys(s for r in group for s in selectors_for(r, self.matchers)))
            series: dict[str, dict[str, str]] = {}
            for chunk in _chunks(sels, SELECTORS_PER_CALL):
                answer = self.client.series(chunk, start, end)
                out.problems.extend(f"{NAME} warning: {w}" for w in answer.warnings)
                if answer.truncated:
                    out.problems.append(f"{NAME}: the series lookup of scope {scope!r} "
                                        f"matched over {self.client.max_series} series; "
                                        f"only the first were considered")
                series.update((selector(x), x) for x in answer.series)
            resolved = resolver.resolve_many([(scope, x) for x in series.values()])
            for labels, res in zip(series.values(), resolved, strict=True):
                if res.iri in wanted:
                    found[res.iri].append(labels)
        for series_of in found.values():  # the operator's metrics before up, then scrape_*
            series_of.sort(key=lambda x: (_rank(x.get("__name__", "")), selector(x)))
        return found

    def _bounded(self, found: Mapping[str, list[dict[str, str]]], out: SeriesFetch
                 ) -> list[tuple[str, dict[str, str]]]:
        """At most ``max_series`` (entity, labels), taken round-robin over the entities."""
        kept: list[tuple[str, dict[str, str]]] = []
        queues = [(iri, iter(series)) for iri, series in found.items() if series]
        while queues and len(kept) < self.max_series:
            nxt = []
            for iri, it in queues:
                labels = next(it, None)
                if labels is None:
                    continue
                if len(kept) < self.max_series:
                    kept.append((iri, labels))
                nxt.append((iri, it))
            queues = nxt
        total = sum(len(v) for v in found.values())
        if total > len(kept):
            taken = Counter(iri for iri, _ in kept)
            cut = sorted(iri for iri, v in found.items() if len(v) > taken[iri])
            out.problems.append(
                f"{NAME}: {total} series matched the entities, kept {len(kept)} "
                f"(prometheus_max_series); series left out for {len(cut)} entities: "
                f"{', '.join(cut[:5])}" + (" ..." if len(cut) > 5 else ""))
        return kept

    def _samples(self, kept: Sequence[tuple[str, dict[str, str]]], start: datetime,
                 end: datetime, out: SeriesFetch) -> None:
        span = max((end - start).total_seconds(), 0.0)
        step = max(self.step_s, span / (MAX_POINTS - 1))
        for batch in _batches(kept):
            wanted = {selector(labels): (iri, labels) for iri, labels in batch}
            promql = " or ".join(wanted)
            try:
                answer = self.client.query_range(promql, start, end, step)
            except PrometheusUnavailable:
                raise
            except PrometheusError as exc:  # this batch only; the next may pass
                out.problems.append(f"{NAME}: {len(batch)} series not read: {exc}")
                continue
            out.problems.extend(f"{NAME} warning: {w}" for w in answer.warnings)
            got = {selector(s.labels): s for s in answer.series}
            for key, (iri, labels) in wanted.items():
                s = got.get(key)
                ts = s.ts_ms if s is not None else np.empty(0, np.int64)
                values = s.values if s is not None else np.empty(0, np.float64)
                ref = SeriesRef(iri, labels.get("__name__", ""),
                                {k: v for k, v in labels.items() if k != "__name__"},
                                NAME, key)
                out.series.append(SeriesData(ref, ts, values))


def _rank(metric: str) -> int:
    return 2 if metric in TARGET_METRICS and metric != "up" else 1 if metric == "up" else 0


def _batches(kept: Sequence[tuple[str, dict[str, str]]]
             ) -> list[list[tuple[str, dict[str, str]]]]:
    """Series per ``query_range`` call (``a or b or ...``), at most SERIES_PER_QUERY each.
    ``or`` matches elements by their labels without the metric name, so two series that
    differ only by name go to different calls (else the second would be dropped)."""
    batches: list[list[tuple[str, dict[str, str]]]] = []
    signatures: list[set[frozenset[tuple[str, str]]]] = []
    for item in kept:
        sig = frozenset((k, v) for k, v in item[1].items() if k != "__name__")
        for batch, sigs in zip(batches, signatures, strict=True):
            if len(batch) < SERIES_PER_QUERY and sig not in sigs:
                batch.append(item)
                sigs.add(sig)
                break
        else:
            batches.append([item])
            signatures.append({sig})
    return batches


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
