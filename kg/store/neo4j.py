"""The Neo4j backend (5.26 LTS or newer) through the official ``neo4j`` driver.

Same logical model as the embedded store (:mod:`kg.schema`): ``:Entity`` nodes keyed by a
uniqueness constraint on ``iri``, plus one label per class in ``types``; one relationship
type per object property; ``:ChangeLog`` nodes written in the same transaction as the facts.
Writes are batched ``UNWIND`` statements inside one explicit transaction per batch.

Operator queries are checked by the engine: ``EXPLAIN`` returns the query type (``r`` for
read-only) and the plan, which must contain no ``LoadCSV`` and no procedure call outside the
allowlist; then the query runs in a read transaction with a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kg.errors import (
    FactError,
    ForbiddenQuery,
    QueryError,
    QueryOverMemory,
    QueryTimedOut,
    StoreUnavailable,
)
from kg.facts import FactBatch, now_utc, too_long
from kg.query import cypher_guard
from kg.schema import CHANGELOG_TABLE, ENTITY_TABLE, LABEL_PAIRS, StoreSchema, label_pairs
from kg.store.base import ChangeEntry, FactState, QueryResult, RelKey, WriteSummary, plan_write
from ontology import Ontology, load_ontology
from ontology.shapes import ShapeSet, load_shapes

CHUNK = 5_000  # rows per UNWIND statement
# Neo4j's range indexes take keys of up to 8,167 bytes: a longer indexed value (see
# _migrate: iri, kind, source, name) would fail the whole batch's transaction.
MAX_INDEXED_BYTES = 8_000


def _native(v: Any) -> Any:
    """Driver values as plain Python: temporal types to datetime, nodes/relations to dicts."""
    import neo4j.graph
    import neo4j.time

    if isinstance(v, neo4j.time.DateTime):
        # As a fixed UTC offset: the driver gives a named zone ("UTC"), and a value merged
        # back with it would be stored as `...Z[UTC]`, which Cypher's `=` does not equal to
        # the same instant given with an offset (a window edge would then miss it).
        native = v.to_native()
        return native.astimezone(UTC) if native.tzinfo is not None else native
    if isinstance(v, neo4j.time.Date | neo4j.time.Time | neo4j.time.Duration):
        return v.to_native() if hasattr(v, "to_native") else str(v)
    if isinstance(v, neo4j.graph.Node):
        return {"_labels": sorted(v.labels), **{k: _native(x) for k, x in v.items()}}
    if isinstance(v, neo4j.graph.Relationship):
        return {"_type": v.type, **{k: _native(x) for k, x in v.items()}}
    if isinstance(v, neo4j.graph.Path):
        return [_native(x) for x in v]
    if isinstance(v, list):
        return [_native(x) for x in v]
    if isinstance(v, dict):
        return {k: _native(x) for k, x in v.items()}
    return v


class Neo4jStore:
    """GraphStore on Neo4j. Build it with :meth:`connect`."""

    name = "neo4j"
    snapshot_reads = False  # every session reads the live database

    def __init__(self, driver: Any, database: str, onto: Ontology, shapes: ShapeSet,
                 schema: StoreSchema) -> None:
        self._driver = driver
        self._database = database
        self._onto = onto
        self._shapes = shapes
        self.schema = schema

    @classmethod
    def connect(cls, *, uri: str, user: str | None = None, password: str | None = None,
                database: str = "neo4j", onto: Ontology | None = None,
                read_only: bool = False, **_: Any) -> Neo4jStore:
        import neo4j
        from neo4j.exceptions import AuthError, ServiceUnavailable

        onto = onto or load_ontology()
        auth = (user, password or "") if user else None
        try:
            # notifications (e.g. "relationship type does not exist yet") would be logged for
            # every read of a relation type nothing has used
            driver = neo4j.GraphDatabase.driver(uri, auth=auth, notifications_min_severity="OFF")
            driver.verify_connectivity()
        except (ServiceUnavailable, OSError, ValueError) as exc:
            raise StoreUnavailable(f"cannot reach Neo4j at {uri}: {exc}") from exc
        except AuthError as exc:
            raise StoreUnavailable(f"Neo4j at {uri} refused the credentials: {exc}") from exc
        store = cls(driver, database, onto, load_shapes(onto), StoreSchema.from_ontology(onto))
        if not read_only:
            store._migrate()
        return store

    def _migrate(self) -> None:
        stmts = [
            f"CREATE CONSTRAINT autocnc_entity_iri IF NOT EXISTS FOR (n:{ENTITY_TABLE}) "
            "REQUIRE n.iri IS UNIQUE",
            f"CREATE CONSTRAINT autocnc_changelog_seq IF NOT EXISTS FOR (c:{CHANGELOG_TABLE}) "
            "REQUIRE c.seq IS UNIQUE",
            f"CREATE INDEX autocnc_entity_kind IF NOT EXISTS FOR (n:{ENTITY_TABLE}) ON (n.kind)",
            f"CREATE INDEX autocnc_entity_source IF NOT EXISTS FOR (n:{ENTITY_TABLE}) "
            "ON (n.source)",
        ]
        # Range indexes for names and every timestamp property: the usual filters.
        for name, kind in self.schema.entity_properties:
            if kind == "datetime" or name == "name":
                stmts.append(f"CREATE INDEX autocnc_entity_{name} IF NOT EXISTS "
                             f"FOR (n:{ENTITY_TABLE}) ON (n.{name})")
        with self._driver.session(database=self._database) as session:
            for stmt in stmts:
                session.run(stmt).consume()
            self._fill_label_pairs(session)

    @staticmethod
    def _fill_label_pairs(session: Any) -> None:
        """Derive ``labelPairs`` for entities written before it existed (once per database:
        the meta node remembers it)."""
        meta = "MERGE (m:AutoCNCMeta {id: 'derived'}) "
        if session.run(meta + f"RETURN m.{LABEL_PAIRS} AS done").single()["done"]:
            return
        rows = [(r["iri"], label_pairs(r["labels"])) for r in session.run(
            f"MATCH (n:{ENTITY_TABLE}) WHERE n.labels IS NOT NULL AND n.{LABEL_PAIRS} IS NULL "
            "RETURN n.iri AS iri, n.labels AS labels")]
        for i in range(0, len(rows), CHUNK):
            session.run(f"UNWIND $rows AS r MATCH (n:{ENTITY_TABLE} {{iri: r[0]}}) "
                        f"SET n.{LABEL_PAIRS} = r[1]", rows=rows[i:i + CHUNK]).consume()
        session.run(meta + f"SET m.{LABEL_PAIRS} = true").consume()

    # -- writing ---------------------------------------------------------------------------
    def upsert(self, batch: FactBatch) -> WriteSummary:
        _check_indexed(batch)
        now = now_utc()
        plan = plan_write(batch, self._onto, self._shapes, self.schema, self.fetch, now,
                          kinds=self.kinds)
        if plan.empty:
            return plan.summary
        import neo4j.exceptions

        with self._driver.session(database=self._database) as session:
            tx = session.begin_transaction()
            try:
                # The write time goes once, as $now: the driver packs datetimes in Python,
                # ~100 µs each, which was a third of the write.
                for labels, rows in _group(plan.create, lambda r: ":".join(r["types"])):
                    self._unwind(tx, f"UNWIND $rows AS r CREATE (n:{ENTITY_TABLE}:{labels}) "
                                 "SET n = r, n.firstSeen = $now, n.lastSeen = $now",
                                 _without(rows, ("firstSeen", "lastSeen")), now=now)
                for labels, rows in _group(plan.update, lambda r: ":".join(r["types"])):
                    self._unwind(tx, f"UNWIND $rows AS r MATCH (n:{ENTITY_TABLE} {{iri: r.iri}}) "
                                 f"SET n = r, n.lastSeen = $now SET n:{labels}",
                                 _without(rows, ("lastSeen",)), now=now)
                if plan.kind_changed:
                    # Drop the class labels of the old kind that the new kind does not have.
                    rows = [{"iri": iri, "drop": sorted(set(self._onto.types_of(old))
                                                        - set(self._onto.types_of(new)))}
                            for iri, (old, new) in plan.kind_changed.items()]
                    self._unwind(tx, f"UNWIND $rows AS r MATCH (n:{ENTITY_TABLE} {{iri: r.iri}}) "
                                 "REMOVE n:$(r.drop)", rows)
                self._unwind(tx, f"UNWIND $rows AS i MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                             "SET n.lastSeen = $now", plan.touch, now=now)
                for rel, rows in plan.rel_create.items():
                    self._unwind(tx, f"UNWIND $rows AS r MATCH (a:{ENTITY_TABLE} {{iri: r.start}}) "
                                 f"MATCH (b:{ENTITY_TABLE} {{iri: r.end}}) "
                                 f"CREATE (a)-[e:{rel}]->(b) "
                                 "SET e = r.props, e.firstSeen = $now, e.lastSeen = $now",
                                 _props(rows, ("firstSeen", "lastSeen")), now=now)
                for rel, rows in plan.rel_update.items():
                    self._unwind(tx, f"UNWIND $rows AS r MATCH (a:{ENTITY_TABLE} {{iri: r.start}})"
                                 f"-[e:{rel}]->(b:{ENTITY_TABLE} {{iri: r.end}}) "
                                 "SET e = r.props, e.lastSeen = $now",
                                 _props(rows, ("lastSeen",)), now=now)
                for rel, rows in plan.rel_touch.items():
                    self._unwind(tx, f"UNWIND $rows AS r MATCH (a:{ENTITY_TABLE} {{iri: r.start}})"
                                 f"-[e:{rel}]->(b:{ENTITY_TABLE} {{iri: r.end}}) "
                                 "SET e.lastSeen = $now", rows, now=now)
                seq = self._append_change(tx, plan.changelog, now)
                tx.commit()
            except neo4j.exceptions.Neo4jError as exc:
                tx.close()
                raise FactError("batch", f"Neo4j refused the batch: {exc.message}") from exc
            except BaseException:
                tx.close()
                raise
        plan.summary.seq = seq
        return plan.summary

    @staticmethod
    def _unwind(tx: Any, cypher: str, rows: Sequence[Any], **params: Any) -> None:
        for i in range(0, len(rows), CHUNK):
            tx.run(cypher, rows=list(rows[i:i + CHUNK]), **params).consume()

    @staticmethod
    def _append_change(tx: Any, payload: str, now: datetime) -> int:
        rec = tx.run(
            "MERGE (m:AutoCNCMeta {id: 'changelog'}) ON CREATE SET m.seq = 0 "
            f"SET m.seq = m.seq + 1 CREATE (c:{CHANGELOG_TABLE} {{seq: m.seq, at: $at, "
            "batch: $batch}) RETURN c.seq", at=now, batch=payload,
        ).single()
        return int(rec[0])

    def record_raw_write(self, cypher: str) -> int:
        with self._driver.session(database=self._database) as session:
            return int(session.execute_write(
                lambda tx: self._append_change(tx, json.dumps({"rawCypher": cypher}), now_utc())
            ))

    # -- reading ---------------------------------------------------------------------------
    def _read(self, cypher: str, **params: Any) -> list[dict[str, Any]]:
        with self._driver.session(database=self._database) as session:
            return [{k: _native(v) for k, v in rec.items()}
                    for rec in session.run(cypher, **params)]

    # The lookups below return one record holding a list (collect): the driver handles each
    # record as its own message, ~100 µs apiece, which made endpoint lookups half the write.
    def fetch(self, iris: Sequence[str], rel_keys: Sequence[RelKey]
              ) -> tuple[dict[str, FactState], dict[RelKey, FactState]]:
        names = [n for n, _ in self.schema.entity_properties]
        ents: dict[str, FactState] = {}
        for i in range(0, len(iris), CHUNK):
            for n in self._collected(f"UNWIND $iris AS i MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                                     "RETURN collect(n{.*})", iris=list(iris[i:i + CHUNK])):
                ents[n["iri"]] = FactState.from_row(n["kind"], n, names)
        edge_names = [n for n, _ in self.schema.edge_properties]
        rels: dict[RelKey, FactState] = {}
        by_type: dict[str, list[dict[str, str]]] = {}
        for t, s, e in rel_keys:
            by_type.setdefault(t, []).append({"start": s, "end": e})
        for rel, rows in by_type.items():
            for i in range(0, len(rows), CHUNK):
                # Seek the start, expand, filter the end: without the hint, a relation type
                # with few or no relations yet got a plan that took 15 s for 6,000 keys.
                for s, t, e in self._collected(
                    f"UNWIND $rows AS r MATCH (a:{ENTITY_TABLE} {{iri: r.start}})-[e:{rel}]->"
                    f"(b:{ENTITY_TABLE}) USING INDEX a:{ENTITY_TABLE}(iri) WHERE b.iri = r.end "
                    "RETURN collect([r.start, r.end, e{.*}])", rows=rows[i:i + CHUNK],
                ):
                    rels[(rel, s, t)] = FactState.from_row(rel, e, edge_names)
        return ents, rels

    def kinds(self, iris: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(iris), CHUNK):
            out.update(self._collected(
                f"UNWIND $iris AS i MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                "RETURN collect([n.iri, n.kind])", iris=list(iris[i:i + CHUNK])))
        return out

    def _collected(self, cypher: str, **params: Any) -> list[Any]:
        """The single list a ``RETURN collect(...)`` query returns."""
        with self._driver.session(database=self._database) as session:
            return _native(session.run(cypher, **params).single(strict=True)[0])

    def read(self, cypher: str, params: Mapping[str, Any] | None = None, *,
             max_rows: int | None = None) -> QueryResult:
        """The engine's own read queries (RCA evidence, incidents); never operator input."""
        with self._driver.session(database=self._database,
                                  default_access_mode="READ") as session:
            result = session.run(cypher, dict(params or {}))
            columns = list(result.keys())
            rows: list[list[Any]] = []
            for rec in result:
                if max_rows is not None and len(rows) >= max_rows:
                    return QueryResult(columns, rows, True)
                rows.append([_native(v) for v in rec.values()])
        return QueryResult(columns, rows)

    def live(self, source: str) -> tuple[dict[str, str], list[RelKey]]:
        ents = {r["iri"]: r["kind"] for r in self._read(
            f"MATCH (n:{ENTITY_TABLE}) WHERE n.source = $s AND n.validTo IS NULL "
            "RETURN n.iri AS iri, n.kind AS kind", s=source)}
        rels = [(r["t"], r["a"], r["b"]) for r in self._read(
            f"MATCH (a:{ENTITY_TABLE})-[e]->(b:{ENTITY_TABLE}) "
            "WHERE e.source = $s AND e.validTo IS NULL "
            "RETURN type(e) AS t, a.iri AS a, b.iri AS b", s=source)]
        return ents, rels

    def scan(self, chunk: int = 20_000) -> Iterator[tuple[dict[str, FactState],
                                                           dict[RelKey, FactState]]]:
        names = [n for n, _ in self.schema.entity_properties]
        last = ""
        while True:
            recs = self._read(f"MATCH (n:{ENTITY_TABLE}) WHERE n.iri > $last RETURN n{{.*}} AS n "
                              "ORDER BY n.iri LIMIT $chunk", last=last, chunk=chunk)
            if not recs:
                break
            yield {r["n"]["iri"]: FactState.from_row(r["n"]["kind"], r["n"], names)
                   for r in recs}, {}
            last = recs[-1]["n"]["iri"]
        edge_names = [n for n, _ in self.schema.edge_properties]
        for rel in self.schema.relation_types:
            recs = self._read(f"MATCH (a:{ENTITY_TABLE})-[e:{rel}]->(b:{ENTITY_TABLE}) "
                              "RETURN a.iri AS s, b.iri AS t, e{.*} AS e")
            for i in range(0, len(recs), chunk):
                yield {}, {(rel, r["s"], r["t"]): FactState.from_row(rel, r["e"], edge_names)
                           for r in recs[i:i + chunk]}

    def changes(self, after: int, limit: int = 50) -> list[ChangeEntry]:
        recs = self._read(f"MATCH (c:{CHANGELOG_TABLE}) WHERE c.seq > $after RETURN c.seq AS seq, "
                          "c.at AS at, c.batch AS batch ORDER BY c.seq LIMIT $limit",
                          after=after, limit=limit)
        return [ChangeEntry(r["seq"], r["at"], json.loads(r["batch"])) for r in recs]

    def head(self) -> int:
        recs = self._read("MATCH (m:AutoCNCMeta {id: 'changelog'}) RETURN m.seq AS seq")
        return int(recs[0]["seq"]) if recs else 0

    # -- operator queries ------------------------------------------------------------------
    def query(self, cypher: str, params: Mapping[str, Any] | None = None, *,
              write: bool = False, timeout_s: float = 30.0,
              max_rows: int = 10_000) -> QueryResult:
        import neo4j
        from neo4j.exceptions import ClientError, DriverError, Neo4jError

        cypher_guard.check(cypher, write=write)
        params = dict(params or {})
        try:
            with self._driver.session(
                database=self._database,
                default_access_mode=neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS,
            ) as session:
                if not write:
                    summary = session.run("EXPLAIN " + cypher, params).consume()
                    if summary.query_type != "r":
                        raise ForbiddenQuery(f"the query writes (Neo4j query type "
                                             f"{summary.query_type!r}); this endpoint is "
                                             "read-only")
                    _check_plan(summary.plan)
                result = session.run(neo4j.Query(cypher, timeout=timeout_s), params)
                columns = list(result.keys())
                rows: list[list[Any]] = []
                truncated = False
                for rec in result:
                    if len(rows) >= max_rows:
                        truncated = True
                        break
                    rows.append([_native(v) for v in rec.values()])
                result.consume()
        except ClientError as exc:
            if "TransactionTimedOut" in (exc.code or ""):
                raise QueryTimedOut(f"query stopped after {timeout_s:g} s (setting "
                                    "query_timeout_s); narrow it or add a LIMIT") from exc
            raise QueryError(exc.message or str(exc)) from exc
        except Neo4jError as exc:
            if "OutOfMemory" in (exc.code or ""):
                raise QueryOverMemory(f"Neo4j ran out of memory for the query: "
                                      f"{exc.message}") from exc
            raise QueryError(str(exc)) from exc
        except (ValueError, TypeError, OverflowError) as exc:  # a parameter the driver
            raise QueryError(f"parameters: {exc}") from exc  # cannot send
        except DriverError as exc:
            raise StoreUnavailable(f"Neo4j: {exc}") from exc
        if write:
            self.record_raw_write(cypher)
        return QueryResult(columns, rows, truncated)

    def close(self) -> None:
        self._driver.close()


def _check_indexed(batch: FactBatch) -> None:
    """FactError naming the first entity whose indexed value Neo4j's index cannot take."""
    for e in batch.entities:
        for name, value in (("iri", e.iri), ("source", e.source or batch.source),
                            ("name", e.properties.get("name"))):
            if isinstance(value, str) and too_long(value, MAX_INDEXED_BYTES):
                raise FactError(e.iri, f"{name} is over {MAX_INDEXED_BYTES} bytes, the most "
                                "a Neo4j index takes (Neo4j indexes iri, source and name)",
                                field=name)


def _check_plan(plan: Any) -> None:
    """Refuse plans that read files/URLs or call procedures outside the allowlist."""
    if not plan:
        return
    op = str(plan.get("operatorType", "")).split("@")[0]
    if op == "LoadCSV":
        raise ForbiddenQuery("LOAD CSV is not allowed: it reads files or URLs")
    if op == "ProcedureCall":
        details = str(plan.get("args", {}).get("Details", ""))
        name = details.split("(")[0].strip().lower()
        if name not in cypher_guard.ALLOWED_PROCEDURES:
            raise ForbiddenQuery(f"procedure {name} is not allowed")
    for child in plan.get("children", []):
        _check_plan(child)


def _group(rows: Sequence[dict[str, Any]], key: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return list(groups.items())


def _props(rows: Sequence[dict[str, Any]], drop: tuple[str, ...]) -> list[dict[str, Any]]:
    skip = {"start", "end", *drop}
    return [{"start": r["start"], "end": r["end"],
             "props": {k: v for k, v in r.items() if k not in skip and v is not None}}
            for r in rows]


def _without(rows: Sequence[dict[str, Any]], drop: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows less ``drop`` and null values (``SET n = r`` removes what is absent anyway)."""
    return [{k: v for k, v in r.items() if k not in drop and v is not None} for r in rows]
