"""Metrics ingest: samples to the time-series store, summaries and anomalies to the graph.

Formats (docs/ingest/metrics.md, format version 1): the Prometheus text exposition format
(:mod:`ingest.metrics_prom`), the long CSV / Parquet format and the PetShop wide CSV
(:mod:`ingest.metrics_tables`). The format follows from the file (``.parquet``; a CSV's
header; ``.prom`` / ``.txt`` / ``.metrics`` for the exposition format) or the ``format``
option.

Pipeline, per chunk of samples (``chunk_samples``, default 1,000,000):

1. parse → (series index, epoch ms, value) arrays; bad lines are rejected with file + line;
2. order by (series, time); the same (series, time) twice in the input keeps the last one;
3. per series, *fast path* when every sample is newer than what the series has stored:
   append, update the running summary and detect incrementally from the persisted
   detector state; *slow path* otherwise (out of order, re-ingest, stale state): read the
   series' stored samples, append only new or changed samples, and recompute its summary
   and anomalies from the merged series (the same result as a fresh ingest of it all);
4. append the samples to :class:`kg.timeseries.TimeSeriesStore` (durable);
5. resolve new series to graph entities (:class:`ingest.resolve.Resolver`) and write one
   record per series: its ``MetricSeries`` summary, ``observes`` → the entity, and the
   ``Anomaly`` events it produced (``detectedIn`` → the series, ``aboutEntity`` → the
   entity); then flush the sink so the graph and its views are caught up;
6. save the per-series state (:mod:`ingest.metrics_state`).

Only summaries reach the graph; a series that resolves to nothing keeps its labels, gets no
``observes`` relation and is counted (``unresolvedSeries``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ingest.anomaly import DetectorConfig, Run, counter_rates, detect
from ingest.base import IngestContext, IngestError, Input, Record
from ingest.metrics_prom import looks_like_exposition, parse_prometheus
from ingest.metrics_series import Chunk, SeriesCatalog, SeriesInfo
from ingest.metrics_state import SeriesState, StateTable
from ingest.metrics_tables import (
    TableError,
    head_text,
    long_samples,
    missing_long_columns,
    petshop_samples,
    read_long_csv,
    read_long_parquet,
    sniff_csv,
    zone,
)
from ingest.resolve import Resolution, Resolver
from kg.facts import Entity, Relation, Value, now_utc
from kg.timeseries import TimeSeriesStore

PATTERNS = ("*.prom", "*.metrics", "*.txt", "*.csv", "*.parquet")
FORMATS = ("prometheus", "long", "petshop")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MetricsOptions:
    """Source options (``ctx.options``), validated; see docs/ingest/metrics.md."""

    format: str | None = None
    tz: tzinfo = UTC
    detect: bool = True
    chunk_samples: int = 1_000_000
    detector: DetectorConfig = DetectorConfig()

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MetricsOptions:
        known = {"format", "tz", "detect", "chunk_samples", "window", "min_baseline",
                 "threshold", "min_rel_scale", "min_abs_scale"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise IngestError(f"metrics: unknown option(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
        fmt = options.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise IngestError(f"metrics: option format must be one of {', '.join(FORMATS)}, "
                              f"got {fmt!r}")
        detect_opt = options.get("detect", True)
        if isinstance(detect_opt, str):
            detect_opt = detect_opt.lower() not in ("0", "false", "no", "off")
        try:
            chunk = int(options.get("chunk_samples", cls.chunk_samples))
            if chunk < 1:
                raise ValueError("option chunk_samples must be >= 1")
            return cls(fmt, zone(options.get("tz")), bool(detect_opt), chunk,
                       DetectorConfig.from_options(options))
        except ValueError as exc:
            raise IngestError(f"metrics: {exc}") from None


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    """Ingest metric inputs; see the module doc."""
    opts = MetricsOptions.from_options(dict(ctx.options))
    run = MetricsRun.open(ctx, opts)
    ctx.progress.start(sum(i.size for i in inputs), "metrics")
    for inp in inputs:
        for chunk in _samples(ctx, inp, opts, run.catalog):
            run.add(chunk)
        ctx.progress.advance(inp.size)
    run.finish()


# -- inputs -------------------------------------------------------------------------------------

def format_of(inp: Input, forced: str | None) -> str | None:
    """``prometheus`` / ``long`` / ``long-parquet`` / ``petshop``, or None (not metrics)."""
    head = head_text(inp, 4)
    if head.startswith("PAR1"):
        return "long-parquet" if forced in (None, "long") else None
    if forced == "prometheus":
        return "prometheus"
    suffix = Path(inp.name).suffix.lower()
    if forced in ("long", "petshop") or suffix == ".csv":
        sniffed = sniff_csv(inp)
        return sniffed if forced is None or sniffed == forced else None
    if suffix in (".prom", ".metrics"):
        return "prometheus"
    if looks_like_exposition(head_text(inp)):  # .txt, or an HTTP body without a file name
        return "prometheus"
    return sniff_csv(inp)


def _samples(ctx: IngestContext, inp: Input, opts: MetricsOptions,
             catalog: SeriesCatalog) -> Iterator[Chunk]:
    fmt = format_of(inp, opts.format)
    if fmt is None and (missing := missing_long_columns(inp)):
        ctx.sink.reject(inp.name, "line 1", f"missing column(s) {', '.join(missing)}: a "
                        "long metrics CSV needs timestamp, metric, value",
                        head_text(inp, 1000).split("\n", 1)[0])
        return
    if fmt is None:
        ctx.sink.skip(inp.name, "not a metrics input (Prometheus text exposition, long CSV "
                      "with timestamp,metric,value columns, Parquet, or PetShop metrics.csv)")
        return
    scope = ctx.scope_for(inp)

    def reject(where: str, reason: str, raw: str) -> None:
        ctx.sink.reject(inp.name, where, reason, raw or None)

    try:
        if fmt == "prometheus":
            when = ctx.as_of or inp.mtime() or now_utc()
            yield from parse_prometheus(inp, catalog, scope, _to_ms(when), reject)
        elif fmt == "petshop":
            yield petshop_samples(inp, catalog, scope, reject)
        elif fmt == "long-parquet":
            table = read_long_parquet(inp)
            yield long_samples(table, np.arange(1, table.num_rows + 1), "row", catalog, scope,
                               inp.name, "long-parquet", opts.tz, reject)
        else:
            table, lines, invalid = read_long_csv(inp)
            for number in invalid:
                reject(f"line {number}", "wrong number of cells for the header", "")
            yield long_samples(table, lines, "line", catalog, scope, inp.name, "long-csv",
                               opts.tz, reject)
    except TableError as exc:
        ctx.sink.reject(inp.name, "file", str(exc))


# -- the run ------------------------------------------------------------------------------------

class MetricsRun:
    """One ingest run: the catalogue, the stores and the per-series state."""

    def __init__(self, ctx: IngestContext, opts: MetricsOptions, store: TimeSeriesStore,
                 state: StateTable, stale: set[str]) -> None:
        self.ctx = ctx
        self.opts = opts
        self.store = store
        self.state = state
        self.stale = stale  # series whose saved state misses stored samples
        self.catalog = SeriesCatalog(ctx.kg.settings.max_value_bytes)
        self.resolver = Resolver(ctx.kg)
        self._pending: list[Chunk] = []
        self._pending_n = 0
        self._seen: set[int] = set()

    @classmethod
    def open(cls, ctx: IngestContext, opts: MetricsOptions) -> MetricsRun:
        store = TimeSeriesStore.open(ctx.data_dir, read_only=ctx.sink.dry_run)
        state = StateTable.load(store.root)
        stale = state.stale | store.series_after(state.covered_seq)
        return cls(ctx, opts, store, state, stale)

    def add(self, chunk: Chunk) -> None:
        self._pending.append(chunk)
        self._pending_n += len(chunk)
        if self._pending_n >= self.opts.chunk_samples:
            self._process(Chunk.concat(self._pending))
            self._pending, self._pending_n = [], 0

    def finish(self) -> None:
        if self._pending_n:
            self._process(Chunk.concat(self._pending))
            self._pending, self._pending_n = [], 0
        unresolved = [i for n, i in enumerate(self.catalog.items)
                      if n in self._seen and i.resolution is not None
                      and not i.resolution.resolved]
        if unresolved:
            self.ctx.report.notes.append(
                f"{len(unresolved)} metric series matched no graph entity (kept with their "
                f"labels, no observes relation), e.g. {unresolved[0].display_name}")

    def _process(self, chunk: Chunk) -> None:
        report = self.ctx.report
        idx, ts, val = _ordered(chunk)
        report.count("samples", len(chunk))
        report.count("duplicateSamples", len(chunk) - len(ts))
        report.count("nonFiniteSamples", int((~np.isfinite(val)).sum()))
        cuts = np.flatnonzero(idx[1:] != idx[:-1]) + 1
        groups = list(zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(ts)]]),
                          strict=True))
        slow = [self.catalog.items[idx[a]].sid for a, _ in groups if self._is_slow(idx[a], ts[a])]
        stored = self.store.read(slow).split() if slow else {}
        writes: list[tuple[int, np.ndarray, np.ndarray]] = []
        touched: list[tuple[int, list[Run]]] = []
        for a, b in groups:
            code = int(idx[a])
            sid = self.catalog.items[code].sid
            if sid in stored or self._is_slow(code, ts[a]):
                runs = self._rebuild(code, stored.get(sid), ts[a:b], val[a:b], writes)
            else:
                writes.append((code, ts[a:b], val[a:b]))
                st = self.state.series.setdefault(sid, SeriesState())
                runs = self._observe(code, st, ts[a:b], val[a:b])
            touched.append((code, runs))
        self._append(writes)
        self._emit(touched)
        self.ctx.sink.flush()
        if not self.ctx.sink.dry_run:
            self.state.save(self.store.head_seq, self.stale)

    def _is_slow(self, code: int, first_ms: int) -> bool:
        sid = self.catalog.items[code].sid
        st = self.state.series.get(sid)
        return sid in self.stale or (st is not None and first_ms <= st.last_ms)

    def _rebuild(self, code: int, stored: tuple[np.ndarray, np.ndarray] | None,
                 ts: np.ndarray, val: np.ndarray,
                 writes: list[tuple[int, np.ndarray, np.ndarray]]) -> list[Run]:
        """Slow path: merge with the stored samples, write what is new, recompute."""
        sid = self.catalog.items[code].sid
        old_ts, old_val = stored if stored is not None else (ts[:0], val[:0])
        merged_ts, merged_val, changed = _merge(old_ts, old_val, ts, val)
        self.ctx.report.count("duplicateSamples", int((~changed).sum()))
        if not changed.any() and sid not in self.stale and sid in self.state.series:
            return []  # nothing new: summary and anomalies already in the graph
        writes.append((code, ts[changed], val[changed]))
        self.stale.discard(sid)
        st = self.state.series[sid] = SeriesState()
        return self._observe(code, st, merged_ts, merged_val)

    def _observe(self, code: int, st: SeriesState, ts: np.ndarray, val: np.ndarray
                 ) -> list[Run]:
        """Add samples newer than the state's to its summary and detect anomalies."""
        st.add(ts, val)
        if not self.opts.detect:
            return []
        finite = np.isfinite(val)
        t, x = ts[finite], val[finite]
        if self.catalog.items[code].counter:
            t, x = counter_rates(st.detector, t, x)
        return detect(st.detector, t, x, self.opts.detector)

    def _append(self, writes: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        writes = [w for w in writes if len(w[1])]
        n = sum(len(w[1]) for w in writes)
        self.ctx.report.count("samplesStored", n)
        if not n or self.ctx.sink.dry_run:
            return
        codes = np.concatenate([np.full(len(t), c, dtype=np.int32) for c, t, _ in writes])
        # take() rather than a DictionaryArray: DictionaryArray.from_arrays imports pandas
        ids = pa.array([i.sid for i in self.catalog.items], pa.string()).take(pa.array(codes))
        self.store.append(ids, np.concatenate([t for _, t, _ in writes]),
                          np.concatenate([v for _, _, v in writes]))

    def _emit(self, touched: list[tuple[int, list[Run]]]) -> None:
        fresh = [code for code, _ in touched if self.catalog.items[code].resolution is None]
        if fresh:
            infos = [self.catalog.items[c] for c in fresh]
            found = self.resolver.resolve_many([(i.scope, i.labels) for i in infos])
            for info, res in zip(infos, found, strict=True):
                info.resolution = res
                if not res.resolved:
                    self.ctx.report.count("unresolvedSeries")
        for code, runs in touched:
            if code not in self._seen:
                self._seen.add(code)
                self.ctx.report.count("series")
            info = self.catalog.items[code]
            self.ctx.sink.add(series_record(self.ctx, info, self.state.series[info.sid], runs,
                                            self.opts.detector.method))
            self.ctx.report.count("anomalies", len(runs))


def _ordered(chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples ordered by (series, time); of equal (series, time) the last one given wins."""
    order = np.lexsort((np.arange(len(chunk)), chunk.ts, chunk.idx))
    idx, ts, val = chunk.idx[order], chunk.ts[order], chunk.val[order]
    last = np.ones(len(ts), dtype=bool)
    last[:-1] = (idx[1:] != idx[:-1]) | (ts[1:] != ts[:-1])
    return idx[last], ts[last], val[last]


def _merge(old_ts: np.ndarray, old_val: np.ndarray, ts: np.ndarray, val: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The union (new values win) and which new samples differ from what is stored."""
    pos = np.minimum(np.searchsorted(old_ts, ts), max(len(old_ts) - 1, 0))
    if len(old_ts):
        same = (old_ts[pos] == ts) & ((old_val[pos] == val)
                                      | (np.isnan(old_val[pos]) & np.isnan(val)))
    else:
        same = np.zeros(len(ts), dtype=bool)
    all_ts = np.concatenate([old_ts, ts])
    all_val = np.concatenate([old_val, val])
    order = np.lexsort((np.arange(len(all_ts)), all_ts))
    all_ts, all_val = all_ts[order], all_val[order]
    last = np.ones(len(all_ts), dtype=bool)
    last[:-1] = all_ts[1:] != all_ts[:-1]
    return all_ts[last], all_val[last], ~same


# -- facts --------------------------------------------------------------------------------------

def series_record(ctx: IngestContext, info: SeriesInfo, st: SeriesState, runs: list[Run],
                  method: str) -> Record:
    """The facts of one series: its summary, what it observes, and its anomalies."""
    iri = ctx.iri(info.scope, "MetricSeries", info.sid)
    res = info.resolution or Resolution(None, None, "unresolved")
    props: dict[str, Value] = {
        "seriesId": info.sid, "metricName": info.metric, "labels": info.labels_json,
        "name": info.display_name, "ingestScope": info.scope, "sampleCount": st.count,
        "startTime": _time(st.first_ms), "endTime": _time(st.last_ms),
        "resolution": res.how, "unit": info.unit, "description": info.description,
    }
    if st.finite:
        props.update(minValue=st.vmin, maxValue=st.vmax, meanValue=st.mean,
                     lastValue=st.last_value)
    props = {k: v for k, v in props.items() if v is not None}
    entities = [Entity(iri, "MetricSeries", props, info.source, valid_from=_time(st.first_ms))]
    relations = []
    if res.iri is not None:
        relations.append(Relation("observes", iri, res.iri, {"resolution": res.how},
                                  info.source, valid_from=_time(st.first_ms)))
    for run in runs:
        entity = anomaly_entity(ctx, info, run, method)
        entities.append(entity)
        relations.append(Relation("detectedIn", entity.iri, iri, {}, info.source,
                                  valid_from=entity.valid_from))
        if res.iri is not None:
            relations.append(Relation("aboutEntity", entity.iri, res.iri, {}, info.source,
                                      valid_from=entity.valid_from))
    return Record(info.file, info.where, entities, relations, raw=info.display_name)


def anomaly_entity(ctx: IngestContext, info: SeriesInfo, run: Run, method: str) -> Entity:
    """An anomaly, keyed by its series and start time (so re-detection finds the same IRI);
    ``endTime`` only once a normal point followed it."""
    start = _time(run.start_ms)
    props: dict[str, Value] = {
        "seriesId": info.sid, "metricName": info.metric, "startTime": start,
        "anomalyScore": run.score, "direction": "up" if run.direction > 0 else "down",
        "baselineValue": run.baseline, "observedValue": run.observed, "method": method,
    }
    if run.closed:
        props["endTime"] = _time(run.last_ms)
    key = f"{info.sid}/{start.isoformat().replace('+00:00', 'Z')}"
    return Entity(ctx.iri(info.scope, "Anomaly", key), "Anomaly", props, info.source,
                  valid_from=start)


def _time(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def _to_ms(when: datetime) -> int:
    return (when.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)
