"""Online anomaly detection per metric series: robust z against a trailing median/MAD.

Method (``robust-z``, documented in docs/ingest/metrics.md):

- Each point ``x[i]`` of a series is compared with its **trailing baseline**, the ``window``
  values before it (``x[i-window:i]``; fewer at the start of a series). A point whose
  baseline has fewer than ``min_baseline`` values is not judged.
- ``median`` and ``MAD`` (median absolute deviation from that median) of the baseline give
  ``z = (x[i] - median) / scale`` with ``scale = max(1.4826 * MAD, min_rel_scale * |median|,
  min_abs_scale)``. The floor keeps a flat baseline (MAD 0) from turning a change of 0.1 %
  into an infinite score. The point is anomalous when ``|z| >= threshold``.
- Consecutive anomalous points with the same direction (up: above the median, down: below)
  form **one anomaly**: it starts at the first point, ends at the last one, and its score,
  baseline and observed value are those of its most extreme point. An anomaly whose last
  point is the newest point of the series is still *open*: the next batch may extend it.
- Anomalous points stay in later baselines, so a lasting level shift becomes the new normal
  after about ``window / 2`` points instead of being anomalous forever.
- Counters are watched through their per-second rate (see :func:`counter_rates`).

**Online.** :class:`DetectorState` carries what the next batch needs — the last ``window``
values and the open anomaly — so detecting a series in two batches finds exactly the
anomalies of one pass. It is persisted by :mod:`ingest.metrics_state`.

**Speed.** Exact rolling median/MAD costs two sorts per point. For long batches the exact
work is limited to points that might be anomalous: order statistics of the window from
``scipy.ndimage.rank_filter`` (C, per series) give the median exactly and a lower bound ``L``
of the MAD — at least ``window // 2 + 1`` points lie at or beyond ``s[p]`` and ``s[q]``
(order statistics), so ``MAD >= min(median - s[p], s[q] - median)``. A point with ``|x - median|
< threshold * max(1.4826 L, floors)`` cannot be anomalous; only the rest is computed exactly.
Decisions are identical to computing every window exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
MAX_SCORE = 1e6  # scores are capped so that they stay finite numbers in the graph
FILTER_MIN = 128  # below this many full-window points per series, compute exactly
_EXACT_ROWS = 65_536  # rows per block of the exact computation (bounds memory)
_MARGIN = 1e-9  # relative slack so float rounding never flips a bound-based decision


@dataclass(frozen=True)
class DetectorConfig:
    window: int = 60
    min_baseline: int = 30
    threshold: float = 5.0
    min_rel_scale: float = 0.01
    min_abs_scale: float = 1e-9

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> DetectorConfig:
        """Options ``window``, ``min_baseline``, ``threshold``, ``min_rel_scale``,
        ``min_abs_scale``; ValueError naming the bad one."""
        d = cls()
        cfg = cls(
            window=_int(options, "window", d.window),
            min_baseline=_int(options, "min_baseline", d.min_baseline),
            threshold=_float(options, "threshold", d.threshold),
            min_rel_scale=_float(options, "min_rel_scale", d.min_rel_scale),
            min_abs_scale=_float(options, "min_abs_scale", d.min_abs_scale),
        )
        if not 3 <= cfg.min_baseline <= cfg.window:
            raise ValueError("options: need 3 <= min_baseline <= window, got "
                             f"min_baseline={cfg.min_baseline}, window={cfg.window}")
        if cfg.threshold <= 0 or cfg.min_rel_scale < 0 or cfg.min_abs_scale <= 0:
            raise ValueError("options: threshold and min_abs_scale must be > 0, "
                             "min_rel_scale >= 0")
        return cfg

    @property
    def method(self) -> str:
        return (f"robust-z median/MAD window={self.window} min_baseline={self.min_baseline} "
                f"threshold={self.threshold:g}")


def _int(options: Mapping[str, Any], name: str, default: int) -> int:
    raw = options.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}: expected an integer, got {raw!r}") from None
    if isinstance(raw, float) and not raw.is_integer():
        raise ValueError(f"option {name}: expected an integer, got {raw!r}")
    return value


def _float(options: Mapping[str, Any], name: str, default: float) -> float:
    raw = options.get(name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}: expected a number, got {raw!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"option {name}: expected a finite number, got {raw!r}")
    return value


@dataclass
class Run:
    """One anomaly: consecutive anomalous points with the same direction."""

    start_ms: int
    last_ms: int
    direction: int  # +1 up, -1 down
    score: float  # max |z|
    baseline: float  # median of the baseline at the most extreme point
    observed: float  # value at the most extreme point
    closed: bool = False

    def absorb(self, other: Run) -> None:
        """Extend this run by ``other`` (which directly follows it)."""
        self.last_ms = other.last_ms
        self.closed = other.closed
        if other.score > self.score:
            self.score, self.baseline, self.observed = other.score, other.baseline, \
                other.observed


@dataclass
class DetectorState:
    """What detection of the next batch of a series needs from the previous ones."""

    window: np.ndarray = field(default_factory=lambda: np.empty(0))  # oldest first
    run: Run | None = None  # the open anomaly, if the newest point was anomalous
    prev_ms: int = -1  # counters: the last raw sample (for the next rate)
    prev_raw: float = float("nan")


def counter_rates(state: DetectorState, ts_ms: np.ndarray, raw: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-second rates of a counter at each sample after the previous one.

    A decrease is a counter reset: the rate is then ``value / dt`` (the counter restarted
    from zero), as Prometheus' ``rate()`` assumes. The state's last raw sample is used for
    the first rate and updated.
    """
    if not len(ts_ms):
        return ts_ms, raw
    if state.prev_ms >= 0:
        t = np.concatenate([[state.prev_ms], ts_ms])
        v = np.concatenate([[state.prev_raw], raw])
    else:
        t, v = ts_ms, raw
    state.prev_ms, state.prev_raw = int(ts_ms[-1]), float(raw[-1])
    dv = np.diff(v)
    dt = np.diff(t) / 1000.0
    rates = np.where(dv >= 0, dv, v[1:]) / dt
    return t[1:], rates


def detect(state: DetectorState, ts_ms: np.ndarray, values: np.ndarray,
           cfg: DetectorConfig) -> list[Run]:
    """Judge the finite ``values`` (ascending ``ts_ms``, all newer than what ``state`` has
    seen) and return the anomalies they touch: closed ones, and the open one last. A run
    open in ``state`` is returned closed when the first new point is normal. Updates
    ``state``."""
    if not len(values):
        return []
    prior = state.window[-cfg.window:]
    x = np.concatenate([prior, values])
    z, med = robust_z(x, len(prior), cfg)
    runs = _runs(z, med, values, ts_ms, cfg.threshold)
    out: list[Run] = []
    if state.run is not None:
        if runs and runs[0].start_ms == int(ts_ms[0]) and \
                runs[0].direction == state.run.direction:
            state.run.absorb(runs.pop(0))
        else:
            state.run.closed = True
        out.append(state.run)
    out.extend(runs)
    state.run = out[-1] if out and not out[-1].closed else None
    state.window = x[-cfg.window:].copy()
    return out


def _runs(z: np.ndarray, med: np.ndarray, values: np.ndarray, ts_ms: np.ndarray,
          threshold: float) -> list[Run]:
    anomalous = np.abs(np.nan_to_num(z)) >= threshold
    hits = np.flatnonzero(anomalous)
    if not len(hits):
        return []
    direction = np.where(z[hits] > 0, 1, -1)
    breaks = np.flatnonzero((np.diff(hits) != 1) | (np.diff(direction) != 0)) + 1
    runs = []
    for group in np.split(np.arange(len(hits)), breaks):
        pts = hits[group]
        peak = pts[np.argmax(np.abs(z[pts]))]
        runs.append(Run(int(ts_ms[pts[0]]), int(ts_ms[pts[-1]]), int(direction[group[0]]),
                        float(min(abs(z[peak]), MAX_SCORE)), float(med[peak]),
                        float(values[peak]), closed=bool(pts[-1] < len(values) - 1)))
    return runs


def robust_z(x: np.ndarray, first: int, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Robust z and baseline median of ``x[first:]`` against trailing windows of ``x``.

    NaN where the baseline is shorter than ``min_baseline``; 0 (median NaN) where the
    bound proves the point normal without computing its exact MAD.
    """
    w = cfg.window
    pos = np.arange(first, len(x))
    z = np.full(len(pos), np.nan)
    med = np.full(len(pos), np.nan)
    judged = np.minimum(pos, w) >= cfg.min_baseline
    exact = judged.copy()
    full = np.flatnonzero(pos >= w)
    if len(full) >= FILTER_MIN:
        m, lower = _median_and_mad_bound(x, pos[full], w)
        scale = _scale(MAD_TO_SIGMA * lower, m, cfg)
        normal = np.abs(x[pos[full]] - m) < cfg.threshold * scale * (1 - _MARGIN)
        exact[full[normal]] = False
        z[full[normal]] = 0.0
    todo = np.flatnonzero(exact)
    for block in range(0, len(todo), _EXACT_ROWS):
        rows = todo[block:block + _EXACT_ROWS]
        m, mad = _exact_median_mad(x, pos[rows], w)
        med[rows] = m
        z[rows] = np.clip((x[pos[rows]] - m) / _scale(MAD_TO_SIGMA * mad, m, cfg),
                          -MAX_SCORE, MAX_SCORE)
    return z, med


def _scale(sigma: np.ndarray, median: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    return np.maximum(np.maximum(sigma, cfg.min_rel_scale * np.abs(median)), cfg.min_abs_scale)


def _exact_median_mad(x: np.ndarray, pos: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD of ``x[max(0, i-w):i]`` for each ``i`` in ``pos`` (np.median rules)."""
    idx = pos[:, None] - w + np.arange(w)
    mat = np.where(idx >= 0, x[np.maximum(idx, 0)], np.nan)
    n = np.minimum(pos, w)
    rows = np.arange(len(pos))
    lo, hi = (n - 1) // 2, n // 2
    s = np.sort(mat, axis=1)  # NaN padding sorts last
    m = (s[rows, lo] + s[rows, hi]) / 2
    d = np.sort(np.abs(mat - m[:, None]), axis=1)
    return m, (d[rows, lo] + d[rows, hi]) / 2


def _median_and_mad_bound(x: np.ndarray, pos: np.ndarray, w: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Exact median and a lower bound of the MAD of the full windows ``x[i-w:i]``."""
    lo_i, hi_i = int(pos[0]) - w, int(pos[-1])
    seg = x[lo_i:hi_i]
    # rank_filter's window at j covers seg[j - w//2 : j - w//2 + w]; window i starts at i-w
    j = pos - w - lo_i + w // 2
    need = w // 2 + 1  # this many deviations >= L make the MAD >= L
    p = (need + 1) // 2 - 1  # s[p] and below: p + 1 points
    q = w - need // 2  # s[q] and above: w - q points
    ranks = {r: ndimage.rank_filter(seg, r, size=w, mode="nearest")[j]
             for r in {(w - 1) // 2, w // 2, p, q}}
    m = (ranks[(w - 1) // 2] + ranks[w // 2]) / 2
    lower = np.maximum(np.minimum(m - ranks[p], ranks[q] - m), 0.0)
    return m, lower
