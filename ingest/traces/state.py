"""The persisted trace state of one scope: the spans of the open buckets and call totals.

A bucket stays open until it is ``grace`` seconds behind the newest bucket seen; its spans
are kept, so a bucket whose spans come in many receiver posts, a parent that arrives after
its children, or a restart in between all give the statistics one post with every span would
give (they are a pure function of the span set, :mod:`ingest.traces.derive`). Spans of
closed buckets are dropped; a span that arrives for a closed bucket is *late*: counted and
reported, not merged (its bucket's statistics are final). Call counts are running totals.

On disk (state version 1), ``<data dir>/traces/<scope, URL-quoted>/``:

* ``state.json`` — version, scope, step, newest bucket, generation, the span parts it
  covers, and the call totals; replaced atomically;
* ``spans-<generation>.parquet`` — the spans accepted by one save (ids, times, kind,
  status, texts); folded into one part when there are many.

A save writes its part, then ``state.json``, and only *after* the derived facts and samples
are durable (the caller's order). A crash before it leaves the older state, so a retried
post recomputes the same absolute values: nothing is counted twice. Parts that
``state.json`` does not list are leftovers of such a crash and are deleted on load.

The server keeps the last saved state of each scope in memory (checked against the
generation in ``state.json``), so a receiver post does not re-read the window.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.base import IngestError
from ingest.traces import derive
from ingest.traces.spans import Instance, SpanBatch
from kg.timeseries import fsync_path

STATE_VERSION = 1
DEFAULT_STEP = 60  # seconds: one-minute buckets
MAX_PARTS = 16  # more parts than this are folded into one on save
Totals = list[int]  # [count, errors, first start ns, last start ns]

_CACHE: dict[Path, tuple[int, TraceState]] = {}


@dataclass
class Applied:
    """What one batch changed: the statistics of the cells it touched (with every span of
    those cells, old and new), the call totals it changed, and the error counts."""

    cells: derive.Cells
    errors: derive.ErrorCounts
    service_calls: dict[tuple[str, str], Totals]
    pod_calls: dict[tuple[Instance, Instance], Totals]
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    future: int = 0


@dataclass
class TraceState:
    """The open window of one scope (spans with their entry flag and self time), the newest
    bucket, and the call totals; see the module doc."""

    root: Path
    scope: str
    step_ns: int
    grace: int  # buckets a bucket stays open behind the newest one
    window: SpanBatch = field(default_factory=SpanBatch.empty)  # spans of open buckets
    entry: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    self_ns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    gap_ns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    newest: int | None = None  # newest bucket number seen
    generation: int = 0
    parts: list[tuple[str, int]] = field(default_factory=list)  # (file, its newest bucket)
    service_calls: dict[tuple[str, str], Totals] = field(default_factory=dict)
    pod_calls: dict[tuple[Instance, Instance], Totals] = field(default_factory=dict)
    unsaved: list[SpanBatch] = field(default_factory=list)  # accepted since the last save

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, data_dir: Path, scope: str, step_s: int | None, grace_s: int, *,
             cached: bool = True) -> TraceState:
        """The saved state of ``scope`` (empty when there is none). ``step_s`` None takes
        the scope's step (``DEFAULT_STEP`` for a new scope); another step than the scope's
        is an error. ``cached=False`` reads the files even when this process holds the
        state in memory (dry runs)."""
        root = data_dir / "traces" / quote(scope, safe="")
        meta_path = root / "state.json"
        if not meta_path.exists():
            step_s = step_s or DEFAULT_STEP
            return cls(root, scope, step_s * 10**9, -(-grace_s // step_s))
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != STATE_VERSION:
            raise IngestError(f"trace state {meta_path} has version {meta.get('version')}; "
                              f"this AutoCNC reads version {STATE_VERSION}")
        step_s = step_s or meta["stepSeconds"]
        grace = -(-grace_s // step_s)  # whole buckets, rounded up
        if meta["stepSeconds"] != step_s:
            raise IngestError(
                f"traces of scope {scope!r} are bucketed by step={meta['stepSeconds']} s; "
                f"step={step_s} would mix bucket sizes in the same series. Use step="
                f"{meta['stepSeconds']}, or another scope")
        # popped: a batch that fails half-way must not leave a changed state in the cache
        hit = _CACHE.pop(root, None) if cached else None
        if hit is not None and hit[0] == meta["generation"]:
            hit[1].grace = grace
            return hit[1]
        state = cls(root, scope, step_s * 10**9, grace, newest=meta["newestBucket"],
                    generation=meta["generation"], parts=[(p, b) for p, b in meta["parts"]],
                    service_calls={(a, b): t for a, b, *t in meta["serviceCalls"]},
                    pod_calls={(_inst(a), _inst(b)): t for a, b, *t in meta["podCalls"]})
        listed = {p for p, _ in state.parts}
        for f in root.glob("spans-*"):
            if f.name not in listed:
                f.unlink()
        if state.parts:
            spans = unify([_read_part(root / p) for p, _ in state.parts])
            spans = spans.take(state._open(spans))
            state._derive(spans.take(derive.first_occurrences(spans)))
        return state

    def _derive(self, window: SpanBatch) -> None:
        self.window = window
        parent = derive.link(window)
        self.entry = derive.entry_mask(window, parent, self._service_of())
        self.self_ns = derive.self_times(window, parent, self._service_of())
        self.gap_ns = derive.call_gaps(window, parent, self.entry, self._service_of())

    # -- one batch --------------------------------------------------------------------------------
    def apply(self, batch: SpanBatch, max_start_ns: int) -> Applied:
        """Merge a batch into the window: the statistics and totals it changed. Spans that
        start after ``max_start_ns`` (clock skew, bad data) are refused as *future*: they
        would move the newest bucket and close the open ones."""
        batch = intern_into(self.window, batch)
        bucket = batch.start // self.step_ns
        future = batch.start > max_start_ns
        if (~future).any():
            top = int(bucket[~future].max())
            self.newest = top if self.newest is None else max(self.newest, top)
        late = ~future & (bucket < (self.newest or 0) - self.grace)
        batch = batch.take(~future & ~late)
        keep = self._open(self.window)
        window = self.window.take(keep)
        entry, self_ns, gap_ns = self.entry[keep], self.self_ns[keep], self.gap_ns[keep]
        # only the traces the batch touches are re-linked; the other spans keep their values
        touched = np.isin(derive.trace_hash(window), derive.trace_hash(batch))
        combined = unify([window.take(touched), batch])
        is_new = np.r_[np.zeros(int(touched.sum()), dtype=bool), np.ones(len(batch), bool)]
        first = derive.first_occurrences(combined)
        combined, is_new = combined.take(first), is_new[first]
        parent = derive.link(combined)
        self.window = unify([window.take(~touched), combined])
        entered = derive.entry_mask(combined, parent, self._service_of())
        self.entry = np.r_[entry[~touched], entered]
        self.self_ns = np.r_[self_ns[~touched],
                             derive.self_times(combined, parent, self._service_of())]
        self.gap_ns = np.r_[gap_ns[~touched],
                            derive.call_gaps(combined, parent, entered, self._service_of())]
        accepted = combined.take(is_new)
        if len(accepted):
            self.unsaved.append(accepted)
        # a link is new when its child or its parent is
        has_parent = parent >= 0
        parent_new = has_parent & is_new[np.maximum(parent, 0)]
        linked = np.flatnonzero(is_new | parent_new)
        # what may have changed: the new spans, their parents' self time, their children's
        # entry flag; the cells of the other spans of these traces keep their values
        changed = is_new | parent_new
        changed[parent[is_new & has_parent]] = True
        cells, errors = self._cells(combined.take(changed))
        return Applied(cells, errors, self._add_service_calls(combined, parent, linked),
                       self._add_pod_calls(combined, parent, linked), accepted=len(accepted),
                       duplicates=len(batch) - len(accepted), late=int(late.sum()),
                       future=int(future.sum()))

    def _open(self, spans: SpanBatch) -> np.ndarray:
        """Mask of the spans of open buckets."""
        if self.newest is None:
            return np.ones(len(spans), dtype=bool)
        return spans.start // self.step_ns >= self.newest - self.grace

    def _cells(self, changed: SpanBatch) -> tuple[derive.Cells, derive.ErrorCounts]:
        """Statistics and error counts of every (instance, bucket) the changed spans are
        in, from all the window's spans there."""
        w = self.window
        bucket = w.start // self.step_ns
        low = int(bucket.min()) if len(w) else 0
        nb = int(bucket.max()) - low + 1 if len(w) else 1
        rows = np.isin(w.inst * nb + (bucket - low),
                       changed.inst * nb + (changed.start // self.step_ns - low))
        cells = w.take(rows)
        return (derive.cell_stats(cells, bucket[rows], self.entry[rows], self.self_ns[rows],
                                  self.gap_ns[rows]),
                derive.error_counts(cells, bucket[rows]))

    def _add_service_calls(self, spans: SpanBatch, parent: np.ndarray, rows: np.ndarray
                           ) -> dict[tuple[str, str], Totals]:
        names = self._service_names()
        svc = self._service_of()[spans.inst]
        found = derive.calls(spans, parent, rows, svc, svc)
        changed: dict[tuple[str, str], Totals] = {}
        for i in range(len(found.count)):
            key = (names[found.caller[i]], names[found.callee[i]])
            changed[key] = self.service_calls[key] = _add(self.service_calls.get(key), found, i)
        return changed

    def _add_pod_calls(self, spans: SpanBatch, parent: np.ndarray, rows: np.ndarray
                       ) -> dict[tuple[Instance, Instance], Totals]:
        inst = self.window.instances
        with_pod = np.array([bool(i[1]) for i in inst] or [False])
        key = np.where(with_pod[spans.inst], spans.inst, -1)
        found = derive.calls(spans, parent, rows, key, self._service_of()[spans.inst])
        changed: dict[tuple[Instance, Instance], Totals] = {}
        for i in range(len(found.count)):
            k = (inst[found.caller[i]], inst[found.callee[i]])
            changed[k] = self.pod_calls[k] = _add(self.pod_calls.get(k), found, i)
        return changed

    def _service_names(self) -> list[str]:
        return sorted({i[0] for i in self.window.instances})

    def _service_of(self) -> np.ndarray:
        """Instance code -> service code (index into :meth:`_service_names`)."""
        names = {n: k for k, n in enumerate(self._service_names())}
        return np.array([names[i[0]] for i in self.window.instances] or [0], dtype=np.int64)

    # -- saving ---------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the spans accepted since the last save, then ``state.json`` (atomically)."""
        self.root.mkdir(parents=True, exist_ok=True)
        generation = self.generation + 1
        live = [(p, b) for p, b in self.parts
                if self.newest is None or b >= self.newest - self.grace]
        to_write = self.unsaved
        if len(live) + 1 > MAX_PARTS:  # fold: the whole window (already deduplicated)
            self.window = self.window.compacted()  # drop texts no open span uses any more
            to_write, live = [self.window], []
        new_parts: list[tuple[str, int]] = []
        spans = unify(to_write)
        if len(spans):
            name = f"spans-{generation:09d}.parquet"
            _write_part(self.root / name, spans)
            new_parts.append((name, int((spans.start // self.step_ns).max())))
        meta = {
            "version": STATE_VERSION, "scope": self.scope,
            "stepSeconds": self.step_ns // 10**9, "newestBucket": self.newest,
            "generation": generation, "parts": [list(p) for p in live + new_parts],
            "serviceCalls": [[a, b, *t] for (a, b), t in sorted(self.service_calls.items())],
            "podCalls": [[list(a), list(b), *t] for (a, b), t in
                         sorted(self.pod_calls.items())],
        }
        _replace(self.root / "state.json", json.dumps(meta, separators=(",", ":")).encode())
        listed = {p for p, _ in live + new_parts}
        for p, _ in self.parts:
            if p not in listed:
                (self.root / p).unlink(missing_ok=True)
        self.parts, self.generation, self.unsaved = live + new_parts, generation, []
        _CACHE[self.root] = (generation, self)


def intern_into(target: SpanBatch, batch: SpanBatch) -> SpanBatch:
    """``batch`` with its codes mapped into ``target``'s text tables (which grow)."""
    if (batch.instances is target.instances and batch.operations is target.operations
            and batch.messages is target.messages):
        return batch
    maps = []
    for mine, theirs in ((target.instances, batch.instances),
                         (target.operations, batch.operations),
                         (target.messages, batch.messages)):
        index = {v: i for i, v in enumerate(mine)}
        lookup = []
        for v in theirs:
            if v not in index:
                index[v] = len(mine)
                mine.append(v)  # type: ignore[arg-type]
            lookup.append(index[v])
        maps.append(np.array([*lookup, -1], dtype=np.int64))  # code -1 (no message) stays
    return SpanBatch(batch.trace_hi, batch.trace_lo, batch.span, batch.parent, batch.start,
                     batch.end, maps[0][batch.inst], maps[1][batch.op], batch.kind,
                     batch.status, maps[2][batch.msg], target.instances, target.operations,
                     target.messages)


def unify(batches: list[SpanBatch]) -> SpanBatch:
    """One batch of all spans, in order, with the first batch's text tables."""
    first = batches[0] if batches else SpanBatch.empty()
    mapped = [intern_into(first, b) for b in batches] or [first]
    return first.with_columns({c: np.concatenate([getattr(b, c) for b in mapped])
                               for c in SpanBatch.COLUMNS})


def _inst(values: list[str]) -> Instance:
    return (values[0], values[1], values[2])


def _add(old: Totals | None, found: derive.Calls, i: int) -> Totals:
    count, errors = int(found.count[i]), int(found.errors[i])
    first, last = int(found.first[i]), int(found.last[i])
    if old is None:
        return [count, errors, first, last]
    return [old[0] + count, old[1] + errors, min(old[2], first), max(old[3], last)]


def _write_part(path: Path, spans: SpanBatch) -> None:
    inst = spans.instances
    text = {name: pa.array([inst[i][k] for i in range(len(inst))] or [""], pa.string())
            .take(pa.array(spans.inst)) for k, name in enumerate(("service", "pod",
                                                                   "namespace"))}
    ops = pa.array(spans.operations or [""], pa.string()).take(pa.array(spans.op))
    msgs = pa.array([*spans.messages, ""], pa.string()).take(
        pa.array(np.where(spans.msg < 0, len(spans.messages), spans.msg)))
    table = pa.table({
        **{c: pa.array(getattr(spans, c)) for c in ("trace_hi", "trace_lo", "span", "parent",
                                                     "start", "end", "kind", "status")},
        **text, "operation": ops, "message": msgs,
    }).replace_schema_metadata({b"autocnc.trace-state.version": str(STATE_VERSION).encode()})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    fsync_path(tmp)
    os.replace(tmp, path)


def _read_part(path: Path) -> SpanBatch:
    cols = pq.read_table(path).to_pydict()

    def codes(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
        index: dict[Any, int] = {}
        out = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
        return out, list(index)

    inst, instances = codes(list(zip(cols["service"], cols["pod"], cols["namespace"],
                                     strict=True)))
    op, operations = codes(cols["operation"])
    msg, messages = codes(cols["message"])
    if "" in messages:  # the empty message is "none"
        none = messages.index("")
        msg = np.where(msg == none, -1, msg - (msg > none))
        messages.remove("")
    u64 = {c: np.array(cols[c], dtype=np.uint64) for c in ("trace_hi", "trace_lo", "span",
                                                          "parent")}
    return SpanBatch(**u64, start=np.array(cols["start"], np.int64),
                     end=np.array(cols["end"], np.int64), inst=inst, op=op,
                     kind=np.array(cols["kind"], np.int8),
                     status=np.array(cols["status"], np.int8), msg=msg,
                     instances=instances, operations=operations, messages=messages)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
