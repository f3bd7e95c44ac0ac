"""The RDF view: the graph store's facts as RDF in Oxigraph (on disk), for SPARQL.

Mapping (namespace ``cnc:`` of the ontology):

- an entity: ``<iri> a cnc:<kind>``, one literal per property (``cnc:latencyMs 3.2``, typed
  xsd:double / xsd:integer / xsd:boolean / xsd:dateTime / xsd:string) and its fact metadata
  ``cnc:source``, ``cnc:validFrom``, ``cnc:validTo``, ``cnc:firstSeen``, ``cnc:lastSeen``;
- a relation: the triple ``<start> cnc:<type> <end>`` while it is valid (no ``validTo``), and
  a statement node ``<relation IRI> a rdf:Statement`` with ``rdf:subject``, ``rdf:predicate``,
  ``rdf:object``, its metadata and edge properties (kept after the relation is retired);
- the ontology itself in the named graph ``<https://w3id.org/autocnc/ontology>``; queries see
  the union of all graphs, so ``?x a/rdfs:subClassOf* cnc:ComputeSite`` finds edge sites.

The view is derived state: it keeps a watermark (the last change-log sequence applied) and
catches up by re-reading, from the graph store, the current state of the facts each newer
change touched. Applying a change twice gives the same result, so a crash between the graph
write and the view update loses nothing: the next open catches up.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from kg.errors import QueryError, StoreUnavailable
from kg.query import sparql_guard
from kg.schema import FACT_META
from kg.store.base import FactState, GraphStore, QueryResult, RelKey
from ontology import CNC, Ontology, relation_iri

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ONTOLOGY_GRAPH = ox.NamedNode("https://w3id.org/autocnc/ontology")
META_GRAPH = ox.NamedNode("urn:autocnc:meta")
WATERMARK = (ox.NamedNode("urn:autocnc:view:rdf"), ox.NamedNode(CNC + "watermark"))
_DT = {"string": XSD + "string", "integer": XSD + "integer", "double": XSD + "double",
       "boolean": XSD + "boolean", "datetime": XSD + "dateTime"}
_RDF_TYPE = ox.NamedNode(RDF + "type")
_STATEMENT = ox.NamedNode(RDF + "Statement")
_DG = ox.DefaultGraph()


def _literal(kind: str, value: Any) -> ox.Literal:
    if kind == "boolean":
        text = "true" if value else "false"
    elif kind == "datetime":
        text = value.isoformat().replace("+00:00", "Z")
    elif kind == "double":
        text = repr(float(value))
    else:
        text = str(value)
    return ox.Literal(text, datatype=ox.NamedNode(_DT[kind]))


class RdfView:
    def __init__(self, store: ox.Store, onto: Ontology, base: str) -> None:
        self._ox = store
        self._onto = onto
        self._base = base
        kinds = {n: p.kind for n, p in onto.datatype_properties.items()}
        kinds.update(dict(FACT_META))
        self._kinds = kinds

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
        assert self._onto.path is not None
        self._ox.load(path=str(self._onto.path), format=ox.RdfFormat.TURTLE,
                      to_graph=ONTOLOGY_GRAPH)

    # -- watermark -------------------------------------------------------------------------
    @property
    def watermark(self) -> int:
        for q in self._ox.quads_for_pattern(*WATERMARK, None, META_GRAPH):
            return int(q.object.value)
        return 0

    def _set_watermark(self, seq: int) -> None:
        for q in list(self._ox.quads_for_pattern(*WATERMARK, None, META_GRAPH)):
            self._ox.remove(q)
        self._ox.add(ox.Quad(*WATERMARK, _literal("integer", seq), META_GRAPH))

    # -- catching up -----------------------------------------------------------------------
    def catch_up(self, graph: GraphStore, *, limit: int = 50) -> int:
        """Apply every change newer than the watermark; returns how many were applied."""
        applied = 0
        while True:
            entries = graph.changes(self.watermark, limit=limit)
            if not entries:
                return applied
            if any("rawCypher" in e.batch for e in entries):
                self.rebuild(graph)
                return applied + len(entries)
            iris: list[str] = []
            keys: list[RelKey] = []
            for e in entries:
                i, k = e.touched()
                iris.extend(i)
                keys.extend(k)
            ents, rels = graph.fetch(list(dict.fromkeys(iris)), list(dict.fromkeys(keys)))
            self._write(ents, rels)
            self._set_watermark(entries[-1].seq)
            applied += len(entries)

    def rebuild(self, graph: GraphStore) -> None:
        """Throw the view away and derive it again from the whole graph store."""
        head = graph.head()
        self._ox.clear()
        self._load_ontology()
        for ents, rels in graph.scan():
            self._write(ents, rels, fresh=True)
        self._set_watermark(head)

    def _write(self, ents: dict[str, FactState], rels: dict[RelKey, FactState], *,
               fresh: bool = False) -> None:
        quads: list[ox.Quad] = []
        for iri, st in ents.items():
            subj = ox.NamedNode(iri)
            if not fresh:
                for q in list(self._ox.quads_for_pattern(subj, None, None, _DG)):
                    if q.predicate == _RDF_TYPE or isinstance(q.object, ox.Literal):
                        self._ox.remove(q)
            quads.append(ox.Quad(subj, _RDF_TYPE, ox.NamedNode(CNC + st.kind), _DG))
            quads.extend(self._values(subj, st))
        for (rel, start, end), st in rels.items():
            node = ox.NamedNode(relation_iri(rel, start, end, self._base))
            triple = (ox.NamedNode(start), ox.NamedNode(CNC + rel), ox.NamedNode(end))
            if not fresh:
                for q in list(self._ox.quads_for_pattern(node, None, None, _DG)):
                    self._ox.remove(q)
                self._ox.remove(ox.Quad(*triple, _DG))
            if st.valid_to is None:
                quads.append(ox.Quad(*triple, _DG))
            quads.append(ox.Quad(node, _RDF_TYPE, _STATEMENT, _DG))
            quads.append(ox.Quad(node, ox.NamedNode(RDF + "subject"), triple[0], _DG))
            quads.append(ox.Quad(node, ox.NamedNode(RDF + "predicate"), triple[1], _DG))
            quads.append(ox.Quad(node, ox.NamedNode(RDF + "object"), triple[2], _DG))
            quads.extend(self._values(node, st))
        self._ox.extend(quads)

    def _values(self, subj: ox.NamedNode, st: FactState) -> Iterable[ox.Quad]:
        meta: dict[str, Any] = {"source": st.source, "validFrom": st.valid_from,
                                "validTo": st.valid_to, "firstSeen": st.first_seen,
                                "lastSeen": st.last_seen}
        for name, value in (*st.props.items(), *meta.items()):
            if value is not None:
                yield ox.Quad(subj, ox.NamedNode(CNC + name),
                              _literal(self._kinds[name], value), _DG)

    # -- queries ---------------------------------------------------------------------------
    def query(self, sparql: str, *, timeout_s: float = 30.0, max_rows: int = 10_000,
              terms: bool = False, bindings: dict[Any, Any] | None = None) -> QueryResult:
        """Run a read-only SPARQL query (SELECT/ASK; CONSTRUCT/DESCRIBE as s, p, o rows).

        The timeout is checked between result rows: Oxigraph evaluates lazily, so a query
        that needs minutes before its first row is not interrupted before that row.
        ``terms=True`` keeps Oxigraph terms (for protocol serialisation) instead of Python values.
        """
        form = sparql_guard.check(sparql)
        deadline = time.monotonic() + timeout_s
        try:
            result = self._ox.query(sparql, use_default_graph_as_union=True,
                                    substitutions=bindings)
        except (SyntaxError, ValueError, OSError) as exc:
            raise QueryError(str(exc)) from exc
        if form == "ASK":
            return QueryResult(["ask"], [[bool(result)]])
        if isinstance(result, ox.QueryTriples):
            columns, rows_iter = ["s", "p", "o"], ([t.subject, t.predicate, t.object]
                                                   for t in result)
        else:
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
                    raise QueryError(f"query timed out after {timeout_s:g} s")
                rows.append(list(row) if terms else [_python(t) for t in row])
        except OSError as exc:
            raise QueryError(str(exc)) from exc
        return QueryResult(columns, rows, truncated)

    def close(self) -> None:
        """Release the on-disk store (idempotent); Oxigraph syncs on every write."""
        self.__dict__.pop("_ox", None)


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
