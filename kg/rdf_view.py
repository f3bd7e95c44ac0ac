"""The RDF view: the graph store's facts as RDF in Oxigraph (on disk), for SPARQL.

Mapping (namespace ``cnc:`` of the ontology):

- an entity: ``<iri> a cnc:<kind>``, one literal per property (``cnc:latencyMs 3.2``, typed
  xsd:double / xsd:integer / xsd:boolean / xsd:dateTime / xsd:string) and its fact metadata
  ``cnc:source``, ``cnc:validFrom``, ``cnc:validTo``, ``cnc:firstSeen``, ``cnc:lastSeen``;
- a relation: the triple ``<start> cnc:<type> <end>`` while it is valid (no ``validTo``), and
  a statement node ``<relation IRI> a rdf:Statement`` with ``rdf:subject``, ``rdf:predicate``,
  ``rdf:object``, its metadata and edge properties (kept after the relation is retired);
- the ontology itself in the named graph ``<https://w3id.org/autocnc/ontology>``;
- entailments that pay (OWL 2 RL rules ``cax-sco`` and ``prp-spo1``), each in the named graph
  of the rule that produced it, so an inferred triple is marked as such and says why:
  ``<urn:autocnc:inferred:cax-sco>`` holds ``<x> a <C>`` for every superclass ``C`` of the
  fact's class (cnc classes and the aligned NORIA-O / SOSA / PROV / TIO ones),
  ``<urn:autocnc:inferred:prp-spo1>`` holds ``<s> <q> <o>`` for every super-property ``q``
  of a valid relation's type (``hostedOn`` → ``dependsOn``, ``aboutEntity`` →
  ``sosa:hasFeatureOfInterest``). Each rule graph is described in ``<urn:autocnc:meta>``
  (``a cnc:EntailmentRule``, label, comment). Transitive and inverse properties are not
  materialised: property paths answer them at query time (``cnc:partOf+``), so retiring a
  fact never leaves a stale closure behind. Queries see the union of all graphs, so
  ``?x a cnc:ComputeSite`` finds edge sites and ``GRAPH ?rule { ... }`` tells asserted
  (default graph) from inferred.

The view is derived state: it keeps a watermark (the last change-log sequence applied) and
catches up from the change log. Each entry's payload says per fact whether the write
created, updated or touched it (``ops``, see :func:`kg.store.base.plan_write`):

- *created*: the payload is the whole fact (nothing merged into it), and first/last seen
  are the entry's time, so its quads are written from the payload without reading the graph
  store or removing anything;
- *touched* (same content again): only ``cnc:lastSeen`` is replaced;
- *updated*, or an entry without ``ops``: the fact's current state is read from the graph
  store and its quads are replaced.

Within one round of entries, the last thing that happened to a fact decides (created then
touched is written once, with the later lastSeen; anything then updated is read back).
Quads are written as N-Quads text parsed by Oxigraph (several times faster than building
``Quad`` objects in Python); big rounds go through the bulk loader. Applying an entry again
gives the same quads, and the watermark moves only after the quads are in, so a crash
anywhere (between the graph write and the view update, or in the middle of the view
update) loses nothing: the next catch-up applies the entry again. The test suite checks
that the view after any sequence of writes equals a rebuild from the graph store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import pyoxigraph as ox

from kg.errors import QueryError, QueryTimedOut, StoreUnavailable
from kg.query import sparql_guard
from kg.query.dataset import Dataset
from kg.schema import FACT_META
from kg.store.base import ChangeEntry, FactState, GraphStore, QueryResult, RelKey
from ontology import CNC, Ontology, relation_iri

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ONTOLOGY_GRAPH = ox.NamedNode("https://w3id.org/autocnc/ontology")
META_GRAPH = ox.NamedNode("urn:autocnc:meta")
_VIEW = ox.NamedNode("urn:autocnc:view:rdf")
WATERMARK = (_VIEW, ox.NamedNode(CNC + "watermark"))
# A change-log entry (or, in a rebuild, a fact) the view could not take: the view records
# it here and goes on, so one batch never wedges it (see ``RdfView.set_aside``).
SET_ASIDE = (_VIEW, ox.NamedNode(CNC + "setAside"))
SET_ASIDE_SHOWN = 20  # set-aside records listed by ``set_aside`` (all are counted)
# What the view's quads are derived by: the mapping version and the ontology version. A view
# written by another version is rebuilt on its next catch-up (the ontology decides the
# entailments).
VIEW_FORMAT = 2
_FORMAT = (_VIEW, ox.NamedNode(CNC + "viewFormat"))
INFERRED = "urn:autocnc:inferred:"
# The name a protocol request (``default-graph-uri``) gives the store's default graph: the
# asserted facts, without the ontology and the inferred graphs.
ASSERTED_GRAPH = "urn:autocnc:asserted"
ENTAILMENT_RULES = {
    "cax-sco": ("subclass entailment",
                "OWL 2 RL cax-sco: T(?c1 rdfs:subClassOf ?c2), T(?x rdf:type ?c1) "
                "-> T(?x rdf:type ?c2), over the transitive subclass hierarchy"),
    "prp-spo1": ("sub-property entailment",
                 "OWL 2 RL prp-spo1: T(?p1 rdfs:subPropertyOf ?p2), T(?x ?p1 ?y) "
                 "-> T(?x ?p2 ?y), over the transitive sub-property hierarchy, for "
                 "relations while they are valid"),
}
_TYPES_GRAPH = ox.NamedNode(INFERRED + "cax-sco")
_PROPS_GRAPH = ox.NamedNode(INFERRED + "prp-spo1")
log = logging.getLogger("autocnc.rdf")
ROUND_FACTS = 20_000  # facts applied per round at most (then the watermark moves)
BULK_LINES = 50_000  # rounds with more N-Quads lines than this use the bulk loader
_DT = {"string": XSD + "string", "integer": XSD + "integer", "double": XSD + "double",
       "boolean": XSD + "boolean", "datetime": XSD + "dateTime"}
_RDF_TYPE = ox.NamedNode(RDF + "type")
_LAST_SEEN = ox.NamedNode(CNC + "lastSeen")
_DG = ox.DefaultGraph()
_A = f"<{RDF}type>"
_STMT = (f"<{RDF}type> <{RDF}Statement>", f"<{RDF}subject>", f"<{RDF}predicate>",
         f"<{RDF}object>")


def _literal(kind: str, value: Any) -> ox.Literal:
    return ox.Literal(_lexical(kind, value), datatype=ox.NamedNode(_DT[kind]))


class ViewRefused(QueryError):
    """The view's store refused the quads of a fact (a value its parser cannot take)."""


def _lexical(kind: str, value: Any) -> str:
    """The lexical form of a value; datetimes may come as ISO strings (change-log payloads)."""
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "datetime":
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        return text.replace("+00:00", "Z")
    if kind == "double":
        return repr(float(value))
    return str(value)


@lru_cache(maxsize=8192)  # metadata values (source, first/last seen) repeat across a round
def _nt_literal(kind: str, value: Any) -> str:
    text = _lexical(kind, value)
    if kind == "string":
        text = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                .replace("\r", "\\r"))
    return f'"{text}"^^<{_DT[kind]}>'


class _RoundPlan:
    """What one round of change-log entries does to each fact (the last op decides)."""

    def __init__(self) -> None:
        # key -> ("c", payload fact, created at, last seen) | ("t", last seen) | ("u",)
        self.entities: dict[str, tuple[Any, ...]] = {}
        self.relations: dict[RelKey, tuple[Any, ...]] = {}

    def add(self, entry: ChangeEntry) -> None:
        ent_ops, rel_ops = entry.ops()
        source = entry.batch.get("source")
        for i, f in enumerate(entry.batch.get("entities", [])):
            op = ent_ops[i] if ent_ops and i < len(ent_ops) else "u"
            self._step(self.entities, f["iri"], op, f, source, entry.at)
        for i, f in enumerate(entry.batch.get("relations", [])):
            op = rel_ops[i] if rel_ops and i < len(rel_ops) else "u"
            self._step(self.relations, (f["type"], f["start"], f["end"]), op, f, source,
                       entry.at)

    @staticmethod
    def _step(table: dict[Any, tuple[Any, ...]], key: Any, op: str, fact: Mapping[str, Any],
              source: str | None, at: datetime) -> None:
        cur: Any = table.get(key)
        if op == "c" and cur is None:
            table[key] = ("c", fact if fact.get("source") else {**fact, "source": source}, at, at)
        elif op == "t" and cur is None:
            table[key] = ("t", at)
        elif op == "t" and cur[0] == "c":
            table[key] = ("c", cur[1], cur[2], at)
        elif op == "t" and cur[0] == "t":
            table[key] = ("t", at)
        else:  # an update, an unknown op, or something unexpected: read the graph store
            table[key] = ("u",)

    @property
    def size(self) -> int:
        return len(self.entities) + len(self.relations)

    def fetch_keys(self) -> tuple[list[str], list[RelKey]]:
        return ([k for k, v in self.entities.items() if v[0] == "u"],
                [k for k, v in self.relations.items() if v[0] == "u"])


class RdfView:
    def __init__(self, store: ox.Store, onto: Ontology, base: str) -> None:
        self._ox = store
        self._watermark: int | None = None  # cached: only this handle moves it
        self._onto = onto
        self._base = base
        kinds = {n: p.kind for n, p in onto.datatype_properties.items()}
        kinds.update(dict(FACT_META))
        self._kinds = kinds
        # the predicates of an entity's class and values (the rest link it to others)
        self._value_predicates = [_RDF_TYPE, *(ox.NamedNode(CNC + n) for n in kinds)]
        # the N-Quads tails of the inferred quads per class / relation type
        self._type_tails = {n: [f"{_A} <{t}> <{_TYPES_GRAPH.value}> .\n" for t in c.super_iris]
                            for n, c in onto.classes.items()}
        self._prop_supers = {n: [f"<{q}>" for q in p.super_iris]
                             for n, p in onto.object_properties.items()}
        self._format = f"{VIEW_FORMAT}/{onto.version}"

    @classmethod
    def open(cls, data_dir: Path, onto: Ontology, base: str, *,
             read_only: bool = False) -> RdfView:
        path = Path(data_dir) / "rdf"
        try:
            if read_only:
                if not path.exists():
                    raise StoreUnavailable(f"no RDF view at {path}; run `autocnc init` first")
                store = ox.Store.read_only(str(path))
            else:
                path.mkdir(parents=True, exist_ok=True)
                store = ox.Store(str(path))
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the RDF view at {path}: {exc}") from exc
        view = cls(store, onto, base)
        if not read_only and not store.contains_named_graph(ONTOLOGY_GRAPH):
            view._load_ontology()
        return view

    def _load_ontology(self) -> None:
        """The ontology, the entailment rules' descriptions and the view's format."""
        assert self._onto.path is not None
        self._ox.load(path=str(self._onto.path), format=ox.RdfFormat.TURTLE,
                      to_graph=ONTOLOGY_GRAPH)
        rdfs = "http://www.w3.org/2000/01/rdf-schema#"
        lines = [f"<{INFERRED}{name}> {_A} <{CNC}EntailmentRule> <{META_GRAPH.value}> .\n"
                 f"<{INFERRED}{name}> <{rdfs}label> {_nt_literal('string', label)} "
                 f"<{META_GRAPH.value}> .\n"
                 f"<{INFERRED}{name}> <{rdfs}comment> {_nt_literal('string', comment)} "
                 f"<{META_GRAPH.value}> .\n"
                 for name, (label, comment) in ENTAILMENT_RULES.items()]
        self._ox.load("".join(lines), format=ox.RdfFormat.N_QUADS)
        for q in list(self._ox.quads_for_pattern(*_FORMAT, None, META_GRAPH)):
            self._ox.remove(q)
        self._ox.add(ox.Quad(*_FORMAT, _literal("string", self._format), META_GRAPH))

    @property
    def current(self) -> bool:
        """Whether the view was derived by this version of the mapping and ontology."""
        return any(cast(ox.Literal, q.object).value == self._format
                   for q in self._ox.quads_for_pattern(*_FORMAT, None, META_GRAPH))

    # -- watermark -------------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        if self._watermark is None:
            # max: a crash between adding the new value and removing the old leaves both
            self._watermark = max(
                (int(cast(ox.Literal, q.object).value)
                 for q in self._ox.quads_for_pattern(*WATERMARK, None, META_GRAPH)),
                default=0)
        return self._watermark

    def _set_watermark(self, seq: int) -> None:
        new = ox.Quad(*WATERMARK, _literal("integer", seq), META_GRAPH)
        self._ox.add(new)
        for q in list(self._ox.quads_for_pattern(*WATERMARK, None, META_GRAPH)):
            if q != new:
                self._ox.remove(q)
        self._watermark = seq

    # -- what the view could not take ------------------------------------------------------
    def set_aside(self) -> tuple[int, list[dict[str, Any]]]:
        """How many change-log entries (or facts, in a rebuild) the view set aside, and the
        first :data:`SET_ASIDE_SHOWN` of them (``seq`` or ``fact``, ``error``, ``at``)."""
        records = [json.loads(cast(ox.Literal, q.object).value)
                   for q in self._ox.quads_for_pattern(*SET_ASIDE, None, META_GRAPH)]
        records.sort(key=lambda r: (r.get("seq") or 0, r.get("fact") or ""))
        return len(records), records[:SET_ASIDE_SHOWN]

    def _record_set_aside(self, error: BaseException, *, seq: int | None = None,
                          fact: str | None = None) -> None:
        text = f"{type(error).__name__}: {error}"
        record = {"seq": seq, "fact": fact[:300] if fact else None, "at": _now_iso(),
                  "error": text[:500], "fix": "correct or retire the fact, then run "
                  "`autocnc reindex`"}
        log.error("RDF view: set aside %s: %s", f"change {seq}" if seq else fact, text[:500])
        self._ox.add(ox.Quad(*SET_ASIDE, _literal("string", json.dumps(record)), META_GRAPH))

    # -- catching up -----------------------------------------------------------------------
    def catch_up(self, graph: GraphStore, *, limit: int = 50, until: float | None = None,
                 round_facts: int = ROUND_FACTS) -> int:
        """Apply every change newer than the watermark; returns how many were applied.

        A view derived by another version of the mapping or the ontology is rebuilt first.
        ``until`` (a ``time.monotonic()`` deadline) stops after the round that passes it,
        the watermark where that round ended; ``round_facts`` bounds a round (then the
        watermark moves): small rounds let a caller share the CPU with writers."""
        applied = 0
        if not self.current:
            head = graph.head()
            self.rebuild(graph)
            applied = head
        if until is not None:  # one entry per read: those past the deadline go unused
            limit = 1
        while True:
            entries = graph.changes(self.watermark, limit=limit)
            if not entries:
                return applied
            if any(e.opaque for e in entries):
                self.rebuild(graph)
                return applied + len(entries)
            plan, round_entries = _RoundPlan(), []
            for n, e in enumerate(entries, 1):
                plan.add(e)
                round_entries.append(e)
                # bounded rounds: a backlog of big batches becomes several bulk loads, not
                # one text of millions of lines held in memory at once
                if plan.size >= round_facts or e is entries[-1]:
                    try:
                        self._apply(graph, plan)
                    except _REFUSED:
                        self._apply_one_by_one(graph, round_entries)
                    self._set_watermark(e.seq)
                    plan, round_entries = _RoundPlan(), []
                    if until is not None and time.monotonic() >= until:
                        return applied + n
            applied += len(entries)

    def _apply_one_by_one(self, graph: GraphStore, entries: list[ChangeEntry]) -> None:
        """Apply a round that failed entry by entry, setting aside each entry the view
        refuses on its own (the rest goes on; ``/healthz`` lists what was set aside)."""
        for e in entries:
            plan = _RoundPlan()
            plan.add(e)
            try:
                self._apply(graph, plan)
            except _REFUSED as exc:
                self._record_set_aside(exc, seq=e.seq)

    def rebuild(self, graph: GraphStore) -> None:
        """Throw the view away and derive it again from the whole graph store."""
        head = graph.head()
        self._ox.clear()
        self._watermark = None
        self._load_ontology()
        for ents, rels in graph.scan():
            try:
                self._load([*self._state_lines(ents, rels)])
            except _REFUSED:  # fact by fact, setting aside those the view refuses
                for iri, st in ents.items():
                    self._load_or_set_aside(iri, self._state_lines({iri: st}, {}))
                for key, st in rels.items():
                    self._load_or_set_aside(" ".join(key), self._state_lines({}, {key: st}))
        self._set_watermark(head)

    def _load_or_set_aside(self, fact: str, lines: Iterable[str]) -> None:
        try:
            self._load(list(lines))
        except _REFUSED as exc:
            self._record_set_aside(exc, fact=fact)

    def _apply(self, graph: GraphStore, plan: _RoundPlan) -> None:
        iris, keys = plan.fetch_keys()
        ents, rels = graph.fetch(iris, keys) if iris or keys else ({}, {})
        for iri in iris:
            subj = ox.NamedNode(iri)
            # its class and values, predicate by predicate: all of a subject's quads
            # include its relations, thousands for an incident that its alerts affect
            for pred in self._value_predicates:
                for q in list(self._ox.quads_for_pattern(subj, pred, None, _DG)):
                    self._ox.remove(q)
            for q in list(self._ox.quads_for_pattern(subj, _RDF_TYPE, None, _TYPES_GRAPH)):
                self._ox.remove(q)
        for rel, start, end in keys:
            node = ox.NamedNode(relation_iri(rel, start, end, self._base))
            for q in list(self._ox.quads_for_pattern(node, None, None, _DG)):
                self._ox.remove(q)
            self._ox.remove(ox.Quad(ox.NamedNode(start), ox.NamedNode(CNC + rel),
                                    ox.NamedNode(end), _DG))
        lines = [*self._state_lines(ents, rels), *self._reinfer(keys)]
        for iri, step in plan.entities.items():
            if step[0] == "c":
                f, first, last = step[1:]
                lines.extend(self._fact_lines(f"<{iri}>", f["type"], f.get("properties"),
                                              self._meta(f, first, last)))
            elif step[0] == "t":
                lines.append(self._touch(iri, step[1]))
        for (rel, start, end), step in plan.relations.items():
            if step[0] == "c":
                f, first, last = step[1:]
                lines.extend(self._relation_lines(rel, start, end, f.get("properties"),
                                                  self._meta(f, first, last)))
            elif step[0] == "t":
                lines.append(self._touch(relation_iri(rel, start, end, self._base), step[1]))
        self._load(lines)

    def _reinfer(self, keys: Iterable[RelKey]) -> list[str]:
        """Drop the inferred super-property triples between the endpoints of re-read
        relations, and return those that the relations still asserted there support (the
        re-read ones add their own when they are still valid)."""
        pairs = {(start, end) for _, start, end in keys}
        lines: list[str] = []
        for start, end in pairs:
            s, o = ox.NamedNode(start), ox.NamedNode(end)
            for q in list(self._ox.quads_for_pattern(s, None, o, _PROPS_GRAPH)):
                self._ox.remove(q)
            kept = {q.predicate.value[len(CNC):]
                    for q in self._ox.quads_for_pattern(s, None, o, _DG)
                    if q.predicate.value.startswith(CNC)}
            lines.extend(f"<{start}> {sup} <{end}> <{_PROPS_GRAPH.value}> .\n"
                         for rel in kept for sup in self._prop_supers.get(rel, ()))
        return lines

    def _touch(self, iri: str, at: datetime) -> str:
        """Remove the subject's lastSeen now; return the line of the new one."""
        subj = ox.NamedNode(iri)
        for q in list(self._ox.quads_for_pattern(subj, _LAST_SEEN, None, _DG)):
            self._ox.remove(q)
        return f"<{iri}> <{CNC}lastSeen> {_nt_literal('datetime', at)} .\n"

    @staticmethod
    def _meta(fact: Mapping[str, Any], first: datetime, last: datetime) -> dict[str, Any]:
        return {"source": fact.get("source"), "validFrom": fact.get("validFrom"),
                "validTo": fact.get("validTo"), "firstSeen": first, "lastSeen": last}

    def _state_lines(self, ents: Mapping[str, FactState],
                     rels: Mapping[RelKey, FactState]) -> Iterator[str]:
        for iri, st in ents.items():
            yield from self._fact_lines(f"<{iri}>", st.kind, st.props, _state_meta(st))
        for (rel, start, end), st in rels.items():
            yield from self._relation_lines(rel, start, end, st.props, _state_meta(st))

    def _fact_lines(self, subj: str, kind: str, props: Mapping[str, Any] | None,
                    meta: Mapping[str, Any]) -> Iterator[str]:
        yield f"{subj} {_A} <{CNC}{kind}> .\n"
        for tail in self._type_tails.get(kind, ()):
            yield f"{subj} {tail}"
        yield from self._value_lines(subj, props, meta)

    def _relation_lines(self, rel: str, start: str, end: str, props: Mapping[str, Any] | None,
                        meta: Mapping[str, Any]) -> Iterator[str]:
        node = f"<{relation_iri(rel, start, end, self._base)}>"
        pred = f"<{CNC}{rel}>"
        if meta.get("validTo") is None:
            yield f"<{start}> {pred} <{end}> .\n"
            for sup in self._prop_supers.get(rel, ()):
                yield f"<{start}> {sup} <{end}> <{_PROPS_GRAPH.value}> .\n"
        yield (f"{node} {_STMT[0]} .\n{node} {_STMT[1]} <{start}> .\n"
               f"{node} {_STMT[2]} {pred} .\n{node} {_STMT[3]} <{end}> .\n")
        yield from self._value_lines(node, props, meta)

    def _value_lines(self, subj: str, props: Mapping[str, Any] | None,
                     meta: Mapping[str, Any]) -> Iterable[str]:
        kinds = self._kinds
        return [f"{subj} <{CNC}{name}> {_nt_literal(kinds[name], value)} .\n"
                for items in ((props or {}).items(), meta.items())
                for name, value in items if value is not None]

    def _load(self, lines: list[str]) -> None:
        """Add N-Quads lines (triples without a graph go to the default graph; adding a
        quad twice is harmless)."""
        if not lines:
            return
        text = "".join(lines)
        try:
            if len(lines) > BULK_LINES:
                # Not transactional; fine here: the watermark moves only after this returns,
                # and applying the same lines again is idempotent.
                self._ox.bulk_load(text, format=ox.RdfFormat.N_QUADS)
            else:
                self._ox.load(text, format=ox.RdfFormat.N_QUADS)
        except SyntaxError as exc:
            raise ViewRefused(f"the RDF view refused a fact: {exc}") from exc
        except MemoryError as exc:  # Oxigraph's parser: a line over its 16 MiB buffer
            raise ViewRefused(f"the RDF view refused a fact: {exc}") from exc

    # -- queries ---------------------------------------------------------------------------
    def query(self, sparql: str, *, timeout_s: float = 30.0, max_rows: int = 10_000,
              terms: bool = False, bindings: dict[Any, Any] | None = None,
              dataset: Dataset | None = None, base_iri: str | None = None) -> QueryResult:
        """Run a read-only SPARQL query (SELECT/ASK; CONSTRUCT/DESCRIBE as s, p, o rows).

        The default graph is the union of all graphs, unless the query names its dataset
        (FROM, FROM NAMED) or ``dataset`` (the protocol's ``default-graph-uri`` /
        ``named-graph-uri``, which replace the query's) names one; there
        :data:`ASSERTED_GRAPH` stands for the store's default graph (the asserted facts).
        The timeout is checked between result rows: Oxigraph evaluates lazily, so a query
        that needs minutes before its first row is not interrupted before that row.
        ``terms=True`` keeps Oxigraph terms (for protocol serialisation) instead of Python values;
        ``base_iri`` resolves relative IRIs (the protocol's: the endpoint's URL).
        """
        shape = sparql_guard.analyse(sparql)
        deadline = time.monotonic() + timeout_s
        try:
            result = self._ox.query(sparql, substitutions=bindings, base_iri=base_iri,
                                    **_dataset_args(shape.has_dataset, dataset))
        except (SyntaxError, ValueError, OSError, RuntimeError) as exc:
            raise QueryError(str(exc)) from exc
        if shape.form == "ASK":
            return QueryResult(["ask"], [[bool(result)]])
        if isinstance(result, ox.QueryTriples):
            columns, rows_iter = ["s", "p", "o"], ([t.subject, t.predicate, t.object]
                                                   for t in result)
        else:
            assert isinstance(result, ox.QuerySolutions)
            columns = [v.value for v in result.variables]
            rows_iter = ([sol[c] for c in columns] for sol in result)
        rows: list[list[Any]] = []
        truncated = False
        try:
            for row in rows_iter:
                if len(rows) >= max_rows:
                    truncated = True
                    break
                if time.monotonic() > deadline:
                    raise QueryTimedOut(f"query timed out after {timeout_s:g} s "
                                        "(setting query_timeout_s)")
                rows.append(list(row) if terms else [_python(t) for t in row])
        except OSError as exc:
            raise QueryError(str(exc)) from exc
        finally:
            # Oxigraph's result iterators may only be dropped on the thread that made them;
            # an exception's traceback would otherwise keep them alive into another thread.
            del result, rows_iter
        return QueryResult(columns, rows, truncated)

    def flush(self) -> None:
        """Write what Oxigraph holds in memory to its files: a process killed otherwise
        leaves it to be replayed from Oxigraph's log on the next open (measured: 2.3 s for
        the view of 10k alerts written during a storm)."""
        self._ox.flush()

    def close(self) -> None:
        """Release the on-disk store (idempotent); Oxigraph syncs on every write."""
        self.__dict__.pop("_ox", None)


# What the view cannot take from a batch (a value its parser refuses); anything else (a
# disk error) fails the catch-up, which is then retried, so nothing is set aside for it.
_REFUSED = (ViewRefused, ValueError)


def _dataset_args(query_names_one: bool, dataset: Dataset | None) -> dict[str, Any]:
    """Oxigraph's arguments for the dataset of a query (see ``RdfView.query``)."""
    if dataset is None:
        return {} if query_names_one else {"use_default_graph_as_union": True}
    default: list[Any] = [ox.DefaultGraph() if g == ASSERTED_GRAPH else ox.NamedNode(g)
                          for g in dataset.default_graphs]
    return {"default_graph": default,
            "named_graphs": [ox.NamedNode(g) for g in dataset.named_graphs]}


def _now_iso() -> str:
    from kg.facts import now_utc

    return now_utc().isoformat()


def _python(term: Any) -> Any:
    """An RDF term as a Python value (IRIs as strings, typed literals typed)."""
    if term is None:
        return None
    if isinstance(term, ox.Literal):
        dt = term.datatype.value
        v = term.value
        try:
            if dt == XSD + "integer":
                return int(v)
            if dt in (XSD + "double", XSD + "decimal", XSD + "float"):
                return float(v)
            if dt == XSD + "boolean":
                return v == "true"
            if dt == XSD + "dateTime":
                return datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
        return v
    return term.value if hasattr(term, "value") else str(term)


def _state_meta(st: FactState) -> dict[str, Any]:
    return {"source": st.source, "validFrom": st.valid_from, "validTo": st.valid_to,
            "firstSeen": st.first_seen, "lastSeen": st.last_seen}
