"""The embedded default store: LadybugDB on disk in the data directory.

Schema (derived from the ontology, see :mod:`kg.schema`): one node table ``Entity`` keyed
by ``iri``, one relation table per object property (``Entity`` -> ``Entity``), and a
``ChangeLog`` node table. Writes and key lookups go through ``LOAD FROM`` an Arrow table
joined on the primary key (``COPY`` for a big first load into an empty table, see
``_create_entities``); ``UNWIND ... MATCH (a {iri}), (b {iri})`` plans a cross product in
LadybugDB and was measured about 1000x slower, so both ends are matched in separate MATCH
clauses. Results are read column-wise through Arrow (``_records``).

Operator queries run on a separate read-only database handle, reopened after each write,
so the engine itself refuses writes.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kg.errors import FactError, QueryError, QueryOverMemory, QueryTimedOut, StoreUnavailable
from kg.facts import FactBatch, now_utc
from kg.query import cypher_guard
from kg.schema import CHANGELOG_TABLE, ENTITY_TABLE, LABEL_PAIRS, StoreSchema, label_pairs
from kg.store.base import (
    COMPACTED,
    ChangeEntry,
    FactState,
    QueryResult,
    RelKey,
    WriteSummary,
    plan_write,
)
from ontology import Ontology, load_ontology
from ontology.shapes import ShapeSet, load_shapes

COPY_MIN_ROWS = 5_000  # below this, LOAD FROM ... CREATE (see _create_entities)
CHECKPOINT_MB = 256  # WAL size that triggers a checkpoint (LadybugDB's default: 16 MiB)
_DDL = {"string": "STRING", "integer": "INT64", "double": "DOUBLE", "boolean": "BOOLEAN",
        "datetime": "TIMESTAMP", "string[]": "STRING[]"}
_ARROW = {"string": pa.string(), "integer": pa.int64(), "double": pa.float64(),
          "boolean": pa.bool_(), "datetime": pa.timestamp("us"),
          "string[]": pa.list_(pa.string())}


def _naive_utc(v: Any) -> Any:
    return v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v


def _aware(v: Any) -> Any:
    """LadybugDB returns TIMESTAMP as naive datetimes in UTC; give them their zone back."""
    if isinstance(v, datetime):
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    if isinstance(v, dict):
        return {k: _aware(x) for k, x in v.items()
                if not k.startswith("_") or k == "_LABEL"} if "_ID" in v else {
            k: _aware(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_aware(x) for x in v]
    return v


class LadybugStore:
    """GraphStore on LadybugDB. Build it with :meth:`connect`."""

    name = "embedded"

    def __init__(self, db: Any, path: Path, onto: Ontology, shapes: ShapeSet,
                 schema: StoreSchema, read_only: bool) -> None:
        self._db = db
        self._path = path
        self._onto = onto
        self._shapes = shapes
        self.schema = schema
        self._read_only = read_only
        self._conn: Any = None
        self._ro_conn: Any = None
        self._ro_db: Any = None
        self._lock = threading.RLock()  # one connection, used by one thread at a time
        self._compacted: int | None = None  # change-log payloads dropped up to this seq

    @classmethod
    def connect(cls, data_dir: Path, *, read_only: bool = False,
                onto: Ontology | None = None, **_: Any) -> LadybugStore:
        import ladybug

        onto = onto or load_ontology()
        path = Path(data_dir) / "graph.lbug"
        if read_only and not path.exists():
            raise StoreUnavailable(f"no store at {path}; run `autocnc init` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = ladybug.Database(str(path), read_only=read_only,
                                  buffer_pool_size=buffer_pool_bytes())
        except RuntimeError as exc:
            raise StoreUnavailable(f"cannot open {path}: {exc}") from exc
        store = cls(db, path, onto, load_shapes(onto), StoreSchema.from_ontology(onto), read_only)
        store._conn = ladybug.Connection(db)
        if not read_only:
            store._migrate()
            # A checkpoint rewrites the touched node groups of every table, at a cost that
            # grows with the database (seconds at 100k entities), and the default 16 MiB WAL
            # made nearly every batch commit checkpoint: 45 % of a 400k-fact load. A crash
            # replays at most this much WAL on the next open.
            mb = int(os.environ.get("AUTOCNC_LADYBUG_CHECKPOINT_MB", CHECKPOINT_MB))
            store._run(f"CALL checkpoint_threshold={mb << 20}")
        return store

    # -- schema ----------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Create missing tables and add columns for properties new in the ontology."""
        tables = {r[1] for r in self._run("CALL show_tables() RETURN *").rows}
        if ENTITY_TABLE not in tables:
            cols = ", ".join(f"{n} {_DDL[k]}" for n, k in self.schema.entity_columns)
            self._run(f"CREATE NODE TABLE {ENTITY_TABLE}({cols}, PRIMARY KEY (iri))")
        else:
            have = {r[1] for r in self._run(f"CALL table_info('{ENTITY_TABLE}') RETURN *").rows}
            for n, k in self.schema.entity_columns:
                if n not in have:
                    self._run(f"ALTER TABLE {ENTITY_TABLE} ADD {n} {_DDL[k]}")
            if LABEL_PAIRS not in have:
                self._fill_label_pairs()
        if CHANGELOG_TABLE not in tables:
            self._run(f"CREATE NODE TABLE {CHANGELOG_TABLE}"
                      "(seq INT64, at TIMESTAMP, batch STRING, PRIMARY KEY (seq))")
        rel_cols = ", ".join(f"{n} {_DDL[k]}" for n, k in self.schema.relation_columns)
        for rel in self.schema.relation_types:
            if rel not in tables:
                self._run(f"CREATE REL TABLE {rel}(FROM {ENTITY_TABLE} TO {ENTITY_TABLE}, "
                          f"{rel_cols})")
            else:
                have = {r[1] for r in self._run(f"CALL table_info('{rel}') RETURN *").rows}
                for n, k in self.schema.relation_columns:
                    if n not in have:
                        self._run(f"ALTER TABLE {rel} ADD {n} {_DDL[k]}")

    def _fill_label_pairs(self) -> None:
        """Derive ``labelPairs`` for entities written before the column existed."""
        rows = self._run(f"MATCH (n:{ENTITY_TABLE}) WHERE n.labels IS NOT NULL "
                         "RETURN n.iri, n.labels").rows
        pairs = [(iri, label_pairs(labels)) for iri, labels in rows]
        if pairs:
            self._run(f"LOAD FROM $t MATCH (n:{ENTITY_TABLE} {{iri: iri}}) "
                      f"SET n.{LABEL_PAIRS} = pairs",
                      {"t": pa.table({"iri": pa.array([i for i, _ in pairs], pa.string()),
                                      "pairs": pa.array([p for _, p in pairs],
                                                        _ARROW["string[]"])})})

    # -- writing ---------------------------------------------------------------------------
    def upsert(self, batch: FactBatch) -> WriteSummary:
        if self._read_only:
            raise StoreUnavailable("this store handle is read-only")
        with self._lock:
            now = now_utc()
            plan = plan_write(batch, self._onto, self._shapes, self.schema, self.fetch, now,
                              kinds=self.kinds)
            if plan.empty:
                return plan.summary
            ecols = self.schema.entity_columns
            rcols = self.schema.relation_columns
            self._run("BEGIN TRANSACTION")
            try:
                if plan.create:
                    self._create_entities(plan.create, ecols)
                if plan.update:
                    # only the columns the rows name: rewriting all 130 columns of a row
                    # cost ~10 ms and ~10 KiB of log per statement, for one changed count
                    cols = _named(plan.update, ecols)
                    sets = ", ".join(f"n.{n} = {n}" for n, _ in cols if n != "iri")
                    self._run(f"LOAD FROM $t MATCH (n:{ENTITY_TABLE} {{iri: iri}}) SET {sets}",
                              {"t": _table(plan.update, cols)})
                if plan.touch:
                    self._run(f"LOAD FROM $t MATCH (n:{ENTITY_TABLE} {{iri: iri}}) "
                              "SET n.lastSeen = $now",
                              {"t": pa.table({"iri": pa.array(plan.touch, pa.string())}),
                               "now": _naive_utc(now)})
                key_cols = (("src", "string"), ("dst", "string"))  # `end` is a keyword
                for rel, rows in plan.rel_create.items():
                    self._create_relations(rel, rows, (*key_cols, *rcols))
                for rel, rows in plan.rel_update.items():
                    cols = _named(rows, rcols)
                    sets = ", ".join(f"e.{n} = {n}" for n, _ in cols)
                    self._run(f"LOAD FROM $t MATCH (a:{ENTITY_TABLE} {{iri: src}})"
                              f"-[e:{rel}]->(b:{ENTITY_TABLE}) WHERE b.iri = dst SET {sets}",
                              {"t": _table(_keyed(rows), (*key_cols, *cols))})
                for rel, rows in plan.rel_touch.items():
                    self._run(f"LOAD FROM $t MATCH (a:{ENTITY_TABLE} {{iri: src}})"
                              f"-[e:{rel}]->(b:{ENTITY_TABLE}) WHERE b.iri = dst "
                              "SET e.lastSeen = $now",
                              {"t": _table(_keyed(rows), key_cols), "now": _naive_utc(now)})
                seq = self._append_change(plan.changelog, now)
                self._run("COMMIT")
            except Exception as exc:
                self._rollback()
                if isinstance(exc, QueryError):
                    raise FactError("batch", f"the store refused the batch: {exc}") from exc
                raise
            self._invalidate_reader()
            plan.summary.seq = seq
            return plan.summary

    # LadybugDB 0.22 keeps buffer-pool pages of every COPY into a non-empty table until the
    # database closes (about 0.6 MiB per column per COPY; ~75 MiB per COPY of the wide entity
    # table), so many small COPYs exhaust the pool; and a COPY makes its commit checkpoint the
    # whole database (seconds once it holds 100k entities). COPY is therefore used only for a
    # big batch into an empty table (an initial load), where it is ~5x faster; everything
    # else goes through LOAD FROM ... CREATE, which frees its pages and only appends to the WAL.
    def _create_entities(self, rows: Sequence[Mapping[str, Any]],
                         cols: Sequence[tuple[str, str]]) -> None:
        if len(rows) >= COPY_MIN_ROWS and self._empty(f"MATCH (n:{ENTITY_TABLE})"):
            self._run(f"COPY {ENTITY_TABLE} FROM $t", {"t": _table(rows, cols)})
            return
        cols = _named(rows, cols)  # the others stay null (and cost half the time to name)
        props = ", ".join(f"{n}: {n}" for n, _ in cols)
        self._run(f"LOAD FROM $t CREATE (:{ENTITY_TABLE} {{{props}}})",
                  {"t": _table(rows, cols)})

    def _create_relations(self, rel: str, rows: Sequence[Mapping[str, Any]],
                          cols: Sequence[tuple[str, str]]) -> None:
        keyed = _keyed(rows)
        if len(rows) >= COPY_MIN_ROWS and self._empty(f"MATCH ()-[n:{rel}]->()"):
            self._run(f"COPY {rel} FROM $t", {"t": _table(keyed, cols)})
            return
        cols = _named(keyed, cols)
        props = ", ".join(f"{n}: {n}" for n, _ in cols if n not in ("src", "dst"))
        self._run(f"LOAD FROM $t MATCH (a:{ENTITY_TABLE} {{iri: src}}) "
                  f"MATCH (b:{ENTITY_TABLE} {{iri: dst}}) CREATE (a)-[:{rel} {{{props}}}]->(b)",
                  {"t": _table(keyed, cols)})

    def _empty(self, pattern: str) -> bool:
        return not self._run(f"{pattern} RETURN 1 LIMIT 1").rows

    def _append_change(self, payload: str, now: datetime) -> int:
        seq = self.head() + 1
        self._run(f"CREATE (:{CHANGELOG_TABLE} {{seq: $seq, at: $at, batch: $batch}})",
                  {"seq": seq, "at": _naive_utc(now), "batch": _packed(payload)})
        return seq

    def record_raw_write(self, cypher: str) -> int:
        """Log a maintenance query that wrote outside the fact model (views then rebuild)."""
        with self._lock:
            seq = self._append_change(json.dumps({"rawCypher": cypher}), now_utc())
            self._invalidate_reader()
            return seq

    def _rollback(self) -> None:
        try:
            self._run("ROLLBACK")
        except QueryError:
            pass  # LadybugDB already rolled back the failed transaction

    # -- reading ---------------------------------------------------------------------------
    def fetch(self, iris: Sequence[str], rel_keys: Sequence[RelKey]
              ) -> tuple[dict[str, FactState], dict[RelKey, FactState]]:
        with self._lock:  # between writes: never inside another thread's write transaction
            return self._fetch(iris, rel_keys)

    def _fetch(self, iris: Sequence[str], rel_keys: Sequence[RelKey]
               ) -> tuple[dict[str, FactState], dict[RelKey, FactState]]:
        ents: dict[str, FactState] = {}
        names = frozenset(n for n, _ in self.schema.entity_properties)
        ret = ", ".join(f"n.{n} AS {n}" for n, _ in self.schema.entity_columns)
        if iris:
            if len(iris) <= SMALL:  # a list parameter: the prepared statement is reused
                recs = self._records(f"UNWIND $iris AS i MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                                     f"RETURN {ret}", {"iris": list(iris)})
            else:
                recs = self._records(f"LOAD FROM $t MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                                     f"RETURN {ret}", {"t": _keys(iris)})
            for rec in recs:
                ents[rec["iri"]] = FactState.from_row(rec["kind"], rec, names)
        rels: dict[RelKey, FactState] = {}
        by_type: dict[str, list[RelKey]] = {}
        absent = set(iris).difference(ents)
        for key in dict.fromkeys(rel_keys):
            # a relation from or to an entity not in the store: none yet (alerts bring new
            # pods, and the batch's relations to them need no read)
            if key[1] not in absent and key[2] not in absent:
                by_type.setdefault(key[0], []).append(key)
        edge_names = frozenset(n for n, _ in self.schema.edge_properties)
        rret = ", ".join(f"e.{n} AS {n}" for n, _ in self.schema.relation_columns)
        for rel, keys in by_type.items():
            # Both ends from one Arrow table, the end as a filter after the expansion: fast
            # (an UNWIND of the keys matching both ends planned a join 20x slower).
            if len(keys) <= SMALL:
                recs = self._records(
                    f"UNWIND $pairs AS p MATCH (a:{ENTITY_TABLE} {{iri: p.src}})-[e:{rel}]->"
                    f"(b:{ENTITY_TABLE}) WHERE b.iri = p.dst "
                    f"RETURN a.iri AS src, b.iri AS dst, {rret}",
                    {"pairs": [{"src": k[1], "dst": k[2]} for k in keys]})
            else:
                pairs = pa.table({"src": pa.array([k[1] for k in keys], pa.string()),
                                  "dst": pa.array([k[2] for k in keys], pa.string())})
                recs = self._records(
                    f"LOAD FROM $t MATCH (a:{ENTITY_TABLE} {{iri: src}})-[e:{rel}]->"
                    f"(b:{ENTITY_TABLE}) WHERE b.iri = dst "
                    f"RETURN a.iri AS src, b.iri AS dst, {rret}", {"t": pairs})
            for rec in recs:
                rels[(rel, rec["src"], rec["dst"])] = FactState.from_row(rel, rec, edge_names)
        return ents, rels

    def kinds(self, iris: Sequence[str]) -> dict[str, str]:
        if not iris:
            return {}
        res = self._run(f"LOAD FROM $t MATCH (n:{ENTITY_TABLE} {{iri: i}}) "
                        "RETURN n.iri, n.kind", {"t": _keys(iris)})
        return {iri: kind for iri, kind in res.rows}

    def read(self, cypher: str, params: Mapping[str, Any] | None = None, *,
             max_rows: int | None = None) -> QueryResult:
        """The engine's own read queries (RCA evidence, incidents): on the primary
        connection, which sees every commit at once; never for operator input."""
        with self._lock:
            return self._run(cypher, params, max_rows=max_rows)

    def live(self, source: str) -> tuple[dict[str, str], list[RelKey]]:
        res = self._run(f"MATCH (n:{ENTITY_TABLE}) WHERE n.source = $s AND n.validTo IS NULL "
                        "RETURN n.iri, n.kind", {"s": source})
        ents = {iri: kind for iri, kind in res.rows}
        rels: list[RelKey] = []
        for rel in self.schema.relation_types:
            res = self._run(f"MATCH (a:{ENTITY_TABLE})-[e:{rel}]->(b:{ENTITY_TABLE}) "
                            "WHERE e.source = $s AND e.validTo IS NULL RETURN a.iri, b.iri",
                            {"s": source})
            rels.extend((rel, a, b) for a, b in res.rows)
        return ents, rels

    def scan(self, chunk: int = 20_000) -> Iterator[tuple[dict[str, FactState],
                                                           dict[RelKey, FactState]]]:
        names = frozenset(n for n, _ in self.schema.entity_properties)
        ret = ", ".join(f"n.{n} AS {n}" for n, _ in self.schema.entity_columns)
        # One pass, chunked here: ORDER BY ... SKIP over this wide table crashed LadybugDB 0.22.
        recs = self._records(f"MATCH (n:{ENTITY_TABLE}) RETURN {ret}")
        for i in range(0, len(recs), chunk):
            yield {r["iri"]: FactState.from_row(r["kind"], r, names)
                   for r in recs[i:i + chunk]}, {}
        edge_names = frozenset(n for n, _ in self.schema.edge_properties)
        rret = ", ".join(f"e.{n} AS {n}" for n, _ in self.schema.relation_columns)
        for rel in self.schema.relation_types:
            recs = self._records(f"MATCH (a:{ENTITY_TABLE})-[e:{rel}]->(b:{ENTITY_TABLE}) "
                                 f"RETURN a.iri AS src, b.iri AS dst, {rret}")
            for i in range(0, len(recs), chunk):
                yield {}, {(rel, r["src"], r["dst"]): FactState.from_row(rel, r, edge_names)
                           for r in recs[i:i + chunk]}

    def changes(self, after: int, limit: int = 50) -> list[ChangeEntry]:
        with self._lock:  # between writes: never inside another thread's write transaction
            rows = self._change_rows(after, limit)
        return [ChangeEntry(seq, at, json.loads(_unpacked(batch)) if batch is not None else
                            {COMPACTED: True}) for seq, at, batch in rows]

    def _change_rows(self, after: int, limit: int) -> list[list[Any]]:
        # Sequence numbers are contiguous (each append takes head + 1 inside its write
        # transaction), so the next entries are primary-key lookups; a range scan of the
        # log costs milliseconds per call once it holds big batches, and views call this
        # after every write. Should a gap ever appear, the scan below still finds what
        # lies beyond it.
        res = self._run(f"UNWIND range($first, $last) AS s MATCH (c:{CHANGELOG_TABLE} "
                        "{seq: s}) RETURN c.seq, c.at, c.batch ORDER BY c.seq",
                        {"first": after + 1, "last": after + int(limit)})
        rows = res.rows
        contiguous = [r[0] for r in rows] == list(range(after + 1, after + 1 + len(rows)))
        if not contiguous or (len(rows) < limit and self.head() > after + len(rows)):
            rows = self._run(f"MATCH (c:{CHANGELOG_TABLE}) WHERE c.seq > $after RETURN c.seq, "
                             f"c.at, c.batch ORDER BY c.seq LIMIT {int(limit)}",
                             {"after": after}).rows
        return rows

    def head(self) -> int:
        res = self._run(f"MATCH (c:{CHANGELOG_TABLE}) RETURN max(c.seq)")
        return int(res.rows[0][0] or 0)

    # -- checkpoints -----------------------------------------------------------------------
    def log_bytes(self) -> int:
        try:
            return self._path.with_name(self._path.name + ".wal").stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self, applied: int) -> None:
        """Drop the payloads of the change-log entries up to ``applied``, then fold the
        write-ahead log into the database file.

        A checkpoint rewrites the string data of each table it touches whole (LadybugDB
        0.22): with every batch ever written kept in the change log, each one took ~1 s
        per 80 MB of payloads, holding every writer; without them it takes milliseconds.
        The entries stay (their sequence numbers and times), marked compacted."""
        if self._read_only:
            raise StoreUnavailable("this store handle is read-only")
        with self._lock:
            if self._compacted is None:
                self._compacted = int(self._run(
                    f"MATCH (c:{CHANGELOG_TABLE}) WHERE c.batch IS NULL "
                    "RETURN max(c.seq)").rows[0][0] or 0)
            if applied > self._compacted:
                self._run(f"UNWIND range($first, $last) AS s MATCH (c:{CHANGELOG_TABLE} "
                          "{seq: s}) SET c.batch = NULL",
                          {"first": self._compacted + 1, "last": applied})
                self._compacted = applied
            self._run("CHECKPOINT")
            self._invalidate_reader()

    # -- operator queries ------------------------------------------------------------------
    def query(self, cypher: str, params: Mapping[str, Any] | None = None, *,
              write: bool = False, timeout_s: float = 30.0,
              max_rows: int = 10_000) -> QueryResult:
        cypher_guard.check(cypher, write=write)
        if write:
            if self._read_only:
                raise StoreUnavailable("this store handle is read-only")
            with self._lock:
                res = self._run(cypher, params, timeout_s=timeout_s, max_rows=max_rows)
                self.record_raw_write(cypher)
            return res
        with self._lock:
            return self._run(cypher, params, timeout_s=timeout_s, max_rows=max_rows,
                             conn=self._reader())

    def _reader(self) -> Any:
        """A connection to a read-only handle of the same database file (engine-enforced)."""
        import ladybug

        if self._read_only:
            return self._conn
        if self._ro_conn is None:
            self._ro_db = ladybug.Database(str(self._path), read_only=True)
            self._ro_conn = ladybug.Connection(self._ro_db)
        return self._ro_conn

    def _invalidate_reader(self) -> None:
        # A read-only handle sees the database as of its opening; reopen after writes.
        if self._ro_conn is not None:
            self._ro_conn.close()
            self._ro_db.close()
            self._ro_conn = self._ro_db = None

    def _run(self, cypher: str, params: Mapping[str, Any] | None = None, *,
             timeout_s: float | None = None, max_rows: int | None = None,
             conn: Any = None) -> QueryResult:
        conn = conn or self._conn
        if timeout_s is not None:
            conn.set_query_timeout(int(timeout_s * 1000))
        try:
            res = conn.execute(cypher, {k: _naive_utc(v) for k, v in (params or {}).items()})
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            # ValueError & co: a parameter the binding cannot convert (a list mixing types)
            raise _query_error(exc, timeout_s) from exc
        finally:
            if timeout_s is not None:
                conn.set_query_timeout(0)
            _forget_arrow_statements(conn, params)
        if isinstance(res, list):  # several statements
            res = res[-1]
        columns = list(res.get_column_names())
        rows: list[list[Any]] = []
        truncated = False
        while res.has_next():
            if max_rows is not None and len(rows) >= max_rows:
                truncated = True
                break
            rows.append([_aware(v) for v in res.get_next()])
        res.close()
        return QueryResult(columns, rows, truncated)

    def _records(self, cypher: str, params: Mapping[str, Any] | None = None
                 ) -> list[dict[str, Any]]:
        """Result rows as dicts of their non-null values, read column-wise through Arrow.

        Rows of the entity table are wide and mostly null; converting only the non-null
        columns (timestamps cast to UTC-aware) is ~10x faster than reading row by row.
        """
        try:
            res = self._conn.execute(cypher, {k: _naive_utc(v)
                                              for k, v in (params or {}).items()})
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            raise _query_error(exc, None) from exc
        finally:
            _forget_arrow_statements(self._conn, params)
        table = res.get_as_arrow()
        res.close()
        recs: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
        for name, col in zip(table.column_names, table.columns, strict=True):
            if col.null_count == len(col):
                continue
            rows: Iterable[dict[str, Any]] = recs
            if col.null_count:  # only the rows that have a value (most columns are sparse)
                valid = pc.is_valid(col)
                rows = [recs[i] for i in pc.indices_nonzero(valid).to_pylist()]
                col = col.filter(valid)
            values = col.to_pylist()
            if pa.types.is_timestamp(col.type):  # naive UTC; faster than casting (pytz)
                values = [v.replace(tzinfo=UTC) for v in values]
            for rec, v in zip(rows, values, strict=True):
                rec[name] = v
        return recs

    def close(self) -> None:
        self._invalidate_reader()
        if self._conn is not None:
            self._conn.close()
            self._db.close()
            self._conn = None


SMALL = 256  # keys fetched through a list parameter; more go through an Arrow table


def _query_error(exc: Exception, timeout_s: float | None) -> QueryError:
    """LadybugDB's error as ours: its timeout (``Interrupted.``) and a full buffer pool are
    limits the query hit, anything else the query's own error."""
    text = str(exc)
    if timeout_s is not None and text.strip() == "Interrupted.":
        return QueryTimedOut(f"query stopped after {timeout_s:g} s (setting "
                             "query_timeout_s); narrow it or add a LIMIT")
    if "buffer pool is full" in text or "Unable to allocate memory" in text:
        return QueryOverMemory(f"the query needs more memory than the buffer pool has: "
                               f"{text}")
    return QueryError(text)


def _forget_arrow_statements(conn: Any, params: Mapping[str, Any] | None) -> None:
    """Drop the statements prepared for Arrow parameters from the connection's cache.

    ladybug 0.22 caches every implicitly prepared statement, keyed by the identity of an
    Arrow parameter: a statement is never reused for the next table, and each cached one
    keeps its table and buffer-pool pages alive until the database closes — the growth that
    once exhausted the buffer pool after a few hundred writes. (Private attributes of the
    pinned ladybug version; checked by a test.)
    """
    if not params or not any(isinstance(v, pa.Table | pa.RecordBatch) for v in params.values()):
        return
    cache = getattr(conn, "_pybind_implicit_prepared_cache", None)
    lock = getattr(conn, "_prepared_cache_lock", None)
    if cache is None or lock is None:
        return
    with lock:
        for key in [k for k in cache if any(sig and sig[0] == "pointer" for _, sig in k[1])]:
            close = getattr(cache.pop(key), "close", None)
            if callable(close):
                close()


def buffer_pool_bytes() -> int:
    """The buffer pool of one database handle: ``AUTOCNC_LADYBUG_BUFFER_POOL_MB``, else a
    quarter of physical memory capped at 4 GiB (LadybugDB's own default is 80% of RAM, per
    handle; the writer and its read-only handle would claim 160%)."""
    mb = os.environ.get("AUTOCNC_LADYBUG_BUFFER_POOL_MB")
    if mb:
        return int(mb) << 20
    import psutil

    return int(min(4 << 30, psutil.virtual_memory().total // 4))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> pa.Table:
    """An Arrow table of ``rows`` (missing keys are null); columns nobody set stay all-null."""
    present = set().union(*rows) if rows else set()
    n = len(rows)
    arrays = {}
    for name, kind in columns:
        if name not in present:
            arrays[name] = pa.nulls(n, type=_ARROW[kind])
        elif kind == "datetime":
            arrays[name] = pa.array([_naive_utc(r.get(name)) for r in rows], type=_ARROW[kind])
        else:
            arrays[name] = pa.array([r.get(name) for r in rows], type=_ARROW[kind])
    return pa.table(arrays)


PACKED = "z:"  # a change-log payload stored as base64 of its zlib-compressed JSON


def _packed(payload: str) -> str:
    """A change-log payload as stored: compressed (JSON of alerts shrinks ~5x, base64
    included). The log's string data is what a checkpoint rewrites, and what the
    write-ahead log carries for it."""
    if len(payload) < 1024:
        return payload
    return PACKED + base64.b64encode(zlib.compress(payload.encode(), 1)).decode("ascii")


def _unpacked(stored: str) -> str:
    """A payload as written, from either form (entries written before packing are JSON)."""
    if stored.startswith(PACKED):
        return zlib.decompress(base64.b64decode(stored[len(PACKED):])).decode()
    return stored


def _named(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]
           ) -> list[tuple[str, str]]:
    """The columns that some row names (with a value, or None to clear it)."""
    named = set().union(*rows) if rows else set()
    return [(n, k) for n, k in columns if n in named]


def _keys(iris: Sequence[str]) -> pa.Table:
    """IRIs as a one-column Arrow table ``i``: ``LOAD FROM`` it rather than ``UNWIND`` a list
    parameter, whose conversion in the Python binding costs ~2 µs per element."""
    return pa.table({"i": pa.array(list(iris), type=pa.string())})


def _keyed(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"src": r["start"], "dst": r["end"], **r} for r in rows]
