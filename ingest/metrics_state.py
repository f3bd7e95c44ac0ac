"""The metrics ingest's persisted per-series state: running summaries and detector state.

One Parquet file, ``<data dir>/timeseries/metrics-state.parquet`` (state version 1, in the
file's metadata with the time-series store's part sequence it covers), one row per series:
sample count, finite count, sum, min, max, first/last timestamp, last finite value, and the
anomaly detector's trailing window, open anomaly and last raw counter sample. It is rewritten
atomically after each processed chunk, *after* the graph write, so that a crash never leaves
state that claims more than the graph has.

``covered_seq`` records the newest time-series part the state accounts for. Parts written
after it (a crash between the sample append and the state save) make the state of their
series stale: the ingest rebuilds a stale series from its stored samples the next time it
sees it, and keeps the ``stale`` list (in the file's metadata) until then.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.anomaly import DetectorState, Run

STATE_VERSION = 1
STATE_FILE = "metrics-state.parquet"
_META_VERSION = b"autocnc.metrics-state.version"
_META_SEQ = b"autocnc.metrics-state.covered-seq"
_META_STALE = b"autocnc.metrics-state.stale"


@dataclass
class SeriesState:
    """Running summary of all stored samples of one series, and its detector state."""

    count: int = 0  # distinct (timestamp) samples stored
    finite: int = 0  # of them finite (the summary statistics cover these)
    total: float = 0.0
    vmin: float = math.nan
    vmax: float = math.nan
    first_ms: int = -1
    last_ms: int = -1
    last_value: float = math.nan  # the newest finite sample
    detector: DetectorState = field(default_factory=DetectorState)

    def add(self, ts_ms: np.ndarray, values: np.ndarray) -> None:
        """Account for new samples, all newer than ``last_ms`` (ascending)."""
        if not len(ts_ms):
            return
        finite = values[np.isfinite(values)]
        self.count += len(values)
        if len(finite):
            self.finite += len(finite)
            self.total += float(finite.sum())
            lo, hi = float(finite.min()), float(finite.max())
            self.vmin = lo if math.isnan(self.vmin) else min(self.vmin, lo)
            self.vmax = hi if math.isnan(self.vmax) else max(self.vmax, hi)
            self.last_value = float(finite[-1])
        if self.first_ms < 0:
            self.first_ms = int(ts_ms[0])
        self.last_ms = int(ts_ms[-1])

    @property
    def mean(self) -> float:
        return self.total / self.finite if self.finite else math.nan


@dataclass
class StateTable:
    path: Path
    series: dict[str, SeriesState]
    covered_seq: int = 0
    stale: set[str] = field(default_factory=set)  # series to rebuild from their samples

    @classmethod
    def load(cls, root: Path) -> StateTable:
        """The saved state under the time-series root (empty when there is none)."""
        path = root / STATE_FILE
        if not path.exists():
            return cls(path, {})
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(_META_VERSION) != str(STATE_VERSION).encode():
            # an unknown version is not guessed at: every series is rebuilt from its samples
            return cls(path, {})
        cols = table.to_pydict()
        series = {sid: _row_state(cols, i) for i, sid in enumerate(cols["series_id"])}
        return cls(path, series, int(meta.get(_META_SEQ, b"0")),
                   set(json.loads(meta.get(_META_STALE, b"[]"))))

    def save(self, covered_seq: int, stale: set[str]) -> None:
        """Write the state atomically: it covers the store's parts up to ``covered_seq``,
        except for the ``stale`` series, which still need a rebuild."""
        self.covered_seq, self.stale = covered_seq, set(stale)
        rows = list(self.series.items())
        runs = [st.detector.run for _, st in rows]

        def run_col(name: str, typ: pa.DataType) -> pa.Array:
            return pa.array([getattr(r, name) if r else None for r in runs], typ)

        table = pa.table({
            "series_id": pa.array([sid for sid, _ in rows], pa.string()),
            "count": pa.array([st.count for _, st in rows], pa.int64()),
            "finite": pa.array([st.finite for _, st in rows], pa.int64()),
            "total": pa.array([st.total for _, st in rows], pa.float64()),
            "vmin": pa.array([st.vmin for _, st in rows], pa.float64()),
            "vmax": pa.array([st.vmax for _, st in rows], pa.float64()),
            "first_ms": pa.array([st.first_ms for _, st in rows], pa.int64()),
            "last_ms": pa.array([st.last_ms for _, st in rows], pa.int64()),
            "last_value": pa.array([st.last_value for _, st in rows], pa.float64()),
            "window": pa.array([st.detector.window.tolist() for _, st in rows],
                               pa.list_(pa.float64())),
            "prev_ms": pa.array([st.detector.prev_ms for _, st in rows], pa.int64()),
            "prev_raw": pa.array([st.detector.prev_raw for _, st in rows], pa.float64()),
            "run_start_ms": run_col("start_ms", pa.int64()),
            "run_last_ms": run_col("last_ms", pa.int64()),
            "run_direction": run_col("direction", pa.int8()),
            "run_score": run_col("score", pa.float64()),
            "run_baseline": run_col("baseline", pa.float64()),
            "run_observed": run_col("observed", pa.float64()),
        }).replace_schema_metadata({_META_VERSION: str(STATE_VERSION).encode(),
                                    _META_SEQ: str(covered_seq).encode(),
                                    _META_STALE: json.dumps(sorted(stale)).encode()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _row_state(cols: dict[str, list], i: int) -> SeriesState:
    run = None
    if cols["run_start_ms"][i] is not None:
        run = Run(cols["run_start_ms"][i], cols["run_last_ms"][i], cols["run_direction"][i],
                  cols["run_score"][i], cols["run_baseline"][i], cols["run_observed"][i])
    detector = DetectorState(np.array(cols["window"][i], dtype=np.float64), run,
                             cols["prev_ms"][i], cols["prev_raw"][i])
    return SeriesState(cols["count"][i], cols["finite"][i], cols["total"][i], cols["vmin"][i],
                       cols["vmax"][i], cols["first_ms"][i], cols["last_ms"][i],
                       cols["last_value"][i], detector)
