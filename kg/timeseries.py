"""The columnar time-series store: raw metric samples beside the graph, linked by series id.

The graph holds entities, events and summaries; raw samples stay out of it (ARCHITECTURE.md,
principle 3). They live here, in append-only Parquet files under ``<data dir>/timeseries/``
(format version 1)::

    samples/day=YYYY-MM-DD/part-<seq>.parquet     one file per append and UTC day

Every part file has three columns: ``series_id`` (string), ``ts`` (``timestamp[ms, UTC]``)
and ``value`` (``double``; NaN and ±Inf are kept as given). ``seq`` is a store-wide counter
(zero-padded, 12 digits) that orders the parts by the time they were written. A part is
written to a temporary name, fsynced and renamed, so a reader never sees half a file.

**Series id.** :func:`series_id` is the stable link between the graph (``MetricSeries``
entities carry it as ``seriesId``) and the samples: a BLAKE2b-128 hex digest of the JSON
text ``[scope, metric name, [[label, value], ...] sorted by label]``.

**Duplicates.** Appends never rewrite data, so the same (series id, timestamp) can be
stored more than once (a re-ingested file, a correction, a crash between an append and the
ingest's bookkeeping). :meth:`TimeSeriesStore.read` resolves them: per (series id,
timestamp) the sample of the newest part wins (last write wins). The metrics ingest also
drops samples that are already stored with the same value before appending, so re-ingesting
a file adds nothing. :meth:`TimeSeriesStore.compact` merges each day's parts into one part
without duplicates.

Readers (RCA, the API) open the store with ``TimeSeriesStore.open(data_dir, read_only=True)``
and call :meth:`~TimeSeriesStore.read`; only the process holding the data directory's writer
lock appends or compacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMAT_VERSION = 1
DAY_MS = 86_400_000
SCHEMA = pa.schema([
    pa.field("series_id", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
], metadata={b"autocnc.timeseries.version": str(FORMAT_VERSION).encode()})
_PART = re.compile(r"^part-(\d{12})\.parquet$")
_DAY = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")

TimeLike = datetime | int | None  # a datetime (with zone) or Unix epoch milliseconds


def series_id(scope: str, metric: str, labels: Mapping[str, str]) -> str:
    """The stable id of the series ``metric{labels}`` ingested in ``scope``."""
    doc = json.dumps([scope, metric, sorted(labels.items())], ensure_ascii=False,
                     separators=(",", ":"))
    return hashlib.blake2b(doc.encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Samples:
    """Samples as aligned arrays, grouped by series and ascending in time within a series.

    ``ts_ms`` is Unix epoch milliseconds (UTC); ``timestamps`` gives ``datetime64[ms]``.
    """

    series_id: np.ndarray  # str objects
    ts_ms: np.ndarray  # int64
    value: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def timestamps(self) -> np.ndarray:
        return self.ts_ms.astype("datetime64[ms]")

    def split(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{series id: (ts_ms, value)}``."""
        if not len(self):
            return {}
        cuts = np.flatnonzero(self.series_id[1:] != self.series_id[:-1]) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(self)]])
        return {str(self.series_id[a]): (self.ts_ms[a:b], self.value[a:b])
                for a, b in zip(starts, ends, strict=True)}

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.array([], dtype=object), np.array([], dtype=np.int64),
                   np.array([], dtype=np.float64))


@dataclass(frozen=True)
class Part:
    seq: int
    day: str
    path: Path


class TimeSeriesStore:
    """Append-only Parquet parts of (series id, timestamp, value); see the module doc."""

    def __init__(self, root: Path, next_seq: int, *, read_only: bool = False) -> None:
        self.root = root
        self.next_seq = next_seq
        self.read_only = read_only

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, read_only: bool = False
             ) -> TimeSeriesStore:
        """The store under ``<data_dir>/timeseries`` (created unless ``read_only``)."""
        root = Path(data_dir) / "timeseries"
        if not read_only:
            (root / "samples").mkdir(parents=True, exist_ok=True)
        store = cls(root, 1, read_only=read_only)
        store.next_seq = max((p.seq for p in store.parts()), default=0) + 1
        return store

    @property
    def head_seq(self) -> int:
        """The sequence number of the newest part (0 when empty)."""
        return self.next_seq - 1

    # -- writing ------------------------------------------------------------------------------
    def append(self, series_ids: pa.Array | np.ndarray | Sequence[str], ts_ms: np.ndarray,
               values: np.ndarray) -> int:
        """Append samples (durable on return); one part per UTC day they touch.

        ``series_ids`` may be a (dictionary-encoded) Arrow array; ``ts_ms`` is epoch
        milliseconds. Returns the number of rows written.
        """
        if self.read_only:
            raise PermissionError("the time-series store was opened read-only")
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        ids = series_ids if isinstance(series_ids, pa.Array) else pa.array(series_ids,
                                                                            pa.string())
        if not (len(ids) == len(ts_ms) == len(values)):
            raise ValueError("series_ids, ts_ms and values must have the same length")
        if not len(ts_ms):
            return 0
        if isinstance(ids, pa.DictionaryArray):
            ids = ids.cast(pa.string())
        days = ts_ms // DAY_MS
        lo, hi = int(days.min()), int(days.max())
        unique_days = np.array([lo]) if lo == hi else np.unique(days)
        for day in unique_days:
            if len(unique_days) == 1:
                part_ids, part_ts, part_values = ids, ts_ms, values
            else:
                rows = np.flatnonzero(days == day)
                part_ids, part_ts, part_values = ids.take(pa.array(rows)), ts_ms[rows], \
                    values[rows]
            table = pa.table({"series_id": part_ids,
                              "ts": pa.array(part_ts, pa.timestamp("ms", "UTC")),
                              "value": pa.array(part_values, pa.float64())}, schema=SCHEMA)
            self._write_part(table, _day_name(int(day)))
        return len(ts_ms)

    def _write_part(self, table: pa.Table, day: str) -> Part:
        folder = self.root / "samples" / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        seq = self.next_seq
        self.next_seq += 1
        final = folder / f"part-{seq:012d}.parquet"
        tmp = folder / f".tmp-{seq:012d}-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(table, tmp, compression="snappy", row_group_size=1 << 20)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(folder)
        return Part(seq, day, final)

    def compact(self) -> int:
        """Merge each day's parts into one deduplicated part; returns the parts removed.

        Crash-safe: the merged part is written (with a newer seq) before the old ones are
        deleted, and duplicates left by a crash are resolved by :meth:`read`.
        """
        if self.read_only:
            raise PermissionError("the time-series store was opened read-only")
        removed = 0
        by_day: dict[str, list[Part]] = {}
        for part in self.parts():
            by_day.setdefault(part.day, []).append(part)
        for day, parts in by_day.items():
            if len(parts) < 2:
                continue
            merged = _dedupe(_read_parts(parts, None, None, None))
            self._write_part(pa.table({
                "series_id": pa.array(merged.series_id, pa.string()),
                "ts": pa.array(merged.ts_ms, pa.timestamp("ms", "UTC")),
                "value": pa.array(merged.value, pa.float64())}, schema=SCHEMA), day)
            for part in parts:
                part.path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- reading ------------------------------------------------------------------------------
    def parts(self, *, after_seq: int = 0, start: TimeLike = None, end: TimeLike = None
              ) -> list[Part]:
        """The part files in write order, optionally only newer than ``after_seq`` and only
        days that can hold samples in ``[start, end]``."""
        base = self.root / "samples"
        if not base.is_dir():
            return []
        lo = _day_name(_ms(start) // DAY_MS) if start is not None else None
        hi = _day_name(_ms(end) // DAY_MS) if end is not None else None
        out: list[Part] = []
        for folder in base.iterdir():
            m = _DAY.match(folder.name)
            if not m or (lo and m[1] < lo) or (hi and m[1] > hi):
                continue
            for f in folder.iterdir():
                pm = _PART.match(f.name)
                if pm and int(pm[1]) > after_seq:
                    out.append(Part(int(pm[1]), m[1], f))
        return sorted(out, key=lambda p: p.seq)

    def series_after(self, seq: int) -> set[str]:
        """Ids of the series with samples in parts newer than ``seq``."""
        found: set[str] = set()
        for part in self.parts(after_seq=seq):
            col = pq.read_table(part.path, columns=["series_id"]).column(0)
            found.update(pc.unique(col).to_pylist())
        return found

    def read(self, series_ids: Iterable[str] | None, start: TimeLike = None,
             end: TimeLike = None) -> Samples:
        """The samples of ``series_ids`` (None: all series) with ``start <= ts <= end``
        (both optional, inclusive), one sample per (series, timestamp), newest write wins."""
        ids = None if series_ids is None else sorted(set(series_ids))
        if ids is not None and not ids:
            return Samples.empty()
        lo = _ms(start) if start is not None else None
        hi = _ms(end) if end is not None else None
        for attempt in range(3):  # a concurrent compaction may delete a part we listed
            try:
                return _dedupe(_read_parts(self.parts(start=lo, end=hi), ids, lo, hi))
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _read_parts(parts: Sequence[Part], ids: Sequence[str] | None, lo: int | None,
                hi: int | None) -> list[tuple[int, pa.Table]]:
    flt = None
    if ids is not None:
        flt = pc.field("series_id").isin(pa.array(ids, pa.string()))
    if lo is not None:
        cond = pc.field("ts") >= pa.scalar(lo, pa.timestamp("ms", "UTC"))
        flt = cond if flt is None else flt & cond
    if hi is not None:
        cond = pc.field("ts") <= pa.scalar(hi, pa.timestamp("ms", "UTC"))
        flt = cond if flt is None else flt & cond
    out = []
    for part in parts:
        table = pq.read_table(part.path, filters=flt, schema=SCHEMA)
        if table.num_rows:
            out.append((part.seq, table))
    return out


def _dedupe(tables: list[tuple[int, pa.Table]]) -> Samples:
    """One sample per (series, ts), the newest part's; grouped by series, ascending ts."""
    if not tables:
        return Samples.empty()
    order_col = np.concatenate([np.full(t.num_rows, seq, dtype=np.int64) for seq, t in tables])
    table = pa.concat_tables([t for _, t in tables])
    enc = pc.dictionary_encode(table.column("series_id")).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = np.array(enc.dictionary.to_pylist(), dtype=object)
    # order the dictionary by id so the output is grouped in a stable (sorted) order
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(names)] = np.arange(len(names))
    codes = rank[codes]
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    values = table.column("value").to_numpy()
    idx = np.lexsort((order_col, ts, codes))
    codes, ts, values = codes[idx], ts[idx], values[idx]
    last = np.ones(len(idx), dtype=bool)
    last[:-1] = (codes[1:] != codes[:-1]) | (ts[1:] != ts[:-1])
    return Samples(np.sort(names)[codes[last]], ts[last], values[last])


def _ms(t: datetime | int) -> int:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"{t.isoformat()} has no time zone")
        return int(t.timestamp() * 1000)
    return int(t)


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
