"""Judge a series over an incident window against a clean reference.

A series is evidence only as far as it deviates from what is normal *for it*. For every
series of an incident's entities RCA takes

- the **incident window**: from ``before_s`` before the first symptom to ``after_s`` after
  the last, widened to ``window_steps`` samples either side for coarsely sampled series (a
  5-minute CloudWatch metric needs a longer window than a 15-second scrape), and
- a **reference**: an explicit window when the caller knows one (a fault-free period), else
  the trailing ``trailing_s`` before ``w0``, from which already-anomalous points are removed
  (points beyond ``exclude_z`` robust z of the trailing median are dropped, once: a previous
  incident minutes earlier must not become the new normal);

and computes, for each window point, the robust deviation in the metric's *harmful*
direction (:mod:`reasoning.rca.evidence.kinds`)::

    d = (x - median_ref) / scale      scale = max(1.4826 * MAD_ref, rel_floor * |median_ref|,
                                                  unit floor of the metric)

The unit floors keep a flat or zero reference from turning a tiny change into a huge score
(a 100 % success rate dropping to 99.9 %, one request on an idle service): one percentage
point for percentages and ratios, one millisecond for durations, ``rel_floor`` of the
window's own level for everything else when the reference median is 0.

Availability and success rates are judged as the *failing* fraction (100 % − x, or 1 − x
for ratios: values above 1 mean percent), with a floor of 0.1 percentage point: 99.9 % to
99 % is a tenfold error rate, which a deviation of the rate itself would barely show.

The series' **deviation** is the second-largest point deviation of the window (the largest
when the window has one point): one noisy point does not make a series anomalous, a fault
lasting two samples does. Its **score** is ``log(deviation / threshold)`` above
``threshold`` and 0 below it: it grows without a cap (a 1000x deviation still outranks a
100x one) but slowly, so one extreme series cannot drown the rest, and it never saturates.

A series that cannot be judged says why (``status``): ``missing`` (no sample in the
window), ``too-short`` (fewer than ``min_reference`` reference points), or ``judged``
(``flat`` in ``note`` when reference and window are both constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from reasoning.rca.evidence.kinds import MetricKind, classify
from reasoning.rca.evidence.sources import SeriesData, SeriesRef

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class JudgeConfig:
    """Knobs of the judgement; the defaults are chosen by cross-system validation
    (docs/rca.md, "Choosing the defaults")."""

    threshold: float = 3.0  # robust z below which a deviation is not evidence
    rel_floor: float = 0.01  # scale floor, relative to the reference median
    min_reference: int = 5  # reference points needed to judge a series
    trailing_s: float = 3600.0  # trailing reference span when none is given
    exclude_z: float = 5.0  # trailing reference points this far out are dropped (once)
    before_s: float = 300.0  # the window starts this long before the first symptom ...
    after_s: float = 300.0  # ... and ends this long after the last one
    window_steps: int = 2  # ... but spans at least this many samples either side

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.rel_floor < 0 or self.min_reference < 2 \
                or self.trailing_s <= 0 or self.exclude_z <= 0 or self.before_s < 0 \
                or self.after_s < 0 or self.window_steps < 0:
            raise ValueError("judge: threshold, trailing_s, exclude_z > 0; rel_floor, before_s, "
                             "after_s, window_steps >= 0; min_reference >= 2")

    def window(self, first: datetime, last: datetime, step_s: float
               ) -> tuple[datetime, datetime]:
        """The incident window of a series sampled every ``step_s`` seconds."""
        before = max(self.before_s, self.window_steps * step_s)
        after = max(self.after_s, self.window_steps * step_s)
        return first - timedelta(seconds=before), last + timedelta(seconds=after)


@dataclass(frozen=True)
class Verdict:
    """What one series says about its entity in the incident."""

    ref: SeriesRef
    kind: MetricKind
    status: str  # judged | missing | too-short
    deviation: float = 0.0  # robust z in the harmful direction (>= 0)
    score: float = 0.0  # log(deviation / threshold) when above threshold, else 0
    onset: datetime | None = None  # first window point beyond the threshold
    observed: float | None = None  # the window value at the deviation
    baseline: float | None = None  # the reference median
    scale: float | None = None
    reference_points: int = 0
    note: str = ""

    @property
    def anomalous(self) -> bool:
        return self.score > 0

    def to_json(self) -> dict[str, object]:
        return {"entity": self.ref.entity, "metric": self.ref.metric,
                "labels": dict(self.ref.labels), "source": self.ref.source,
                "kind": self.kind.name, "status": self.status,
                "deviation": round(self.deviation, 3), "score": round(self.score, 4),
                "onset": self.onset.isoformat() if self.onset else None,
                "observed": self.observed, "baseline": self.baseline,
                "referencePoints": self.reference_points, "note": self.note}


def judge(series: SeriesData, symptoms: tuple[datetime, datetime],
          reference: tuple[datetime, datetime] | None, cfg: JudgeConfig) -> Verdict:
    """The verdict on one series (see the module doc) for an incident whose symptoms
    started between ``symptoms[0]`` and ``symptoms[1]``. ``reference`` None: trailing."""
    kind = classify(series.ref.metric, series.ref.labels)
    ts, x = series.ts_ms, series.values
    finite = np.isfinite(x)
    ts, x = ts[finite], x[finite]
    step_s = float(np.median(np.diff(ts))) / 1000 if len(ts) > 1 else 0.0
    window = cfg.window(symptoms[0], symptoms[1], step_s)
    w0, w1 = _ms(window[0]), _ms(window[1])
    in_window = (ts >= w0) & (ts <= w1)
    if not in_window.any():
        return Verdict(series.ref, kind, "missing", note="no sample in the incident window")
    if reference is None:
        r0, r1 = w0 - int(cfg.trailing_s * 1000), w0 - 1
    else:
        r0, r1 = _ms(reference[0]), _ms(reference[1])
    ref = x[(ts >= r0) & (ts <= r1) & ~in_window]
    if reference is None and len(ref) >= cfg.min_reference:
        ref = _without_outliers(ref, cfg)
    if len(ref) < cfg.min_reference:
        return Verdict(series.ref, kind, "too-short", reference_points=len(ref),
                       note=f"{len(ref)} reference point(s), {cfg.min_reference} needed")
    wx, wts = x[in_window], ts[in_window]
    if kind.name == "availability":  # judged as the failing fraction (see the module doc)
        full = 100.0 if max(float(np.max(np.abs(ref))), float(np.max(np.abs(wx)))) > 1.0 \
            else 1.0
        ref, wx = full - ref, full - wx
        kind = MetricKind(kind.name, kind.role, +1, 0.001 * full)
    median = float(np.median(ref))
    mad = float(np.median(np.abs(ref - median)))
    scale = max(MAD_TO_SIGMA * mad, cfg.rel_floor * abs(median), kind.floor,
                cfg.rel_floor * float(np.median(np.abs(wx))) if median == 0 else 0.0)
    if scale <= 0:  # reference and window all zero: nothing moved
        return Verdict(series.ref, kind, "judged", baseline=median, scale=0.0,
                       reference_points=len(ref), note="flat")
    signed = (wx - median) / scale
    harmful = signed * kind.sign if kind.sign else np.abs(signed)
    order = np.argsort(-harmful, kind="stable")
    pick = order[1] if len(order) > 1 else order[0]
    deviation = max(0.0, float(harmful[pick]))
    beyond = np.flatnonzero(harmful >= cfg.threshold)
    onset = _dt(int(wts[beyond[0]])) if len(beyond) else None
    score = math.log(deviation / cfg.threshold) if deviation > cfg.threshold else 0.0
    note = "flat" if mad == 0 and float(np.ptp(wx)) == 0 and wx[0] == median else ""
    return Verdict(series.ref, kind, "judged", deviation, score, onset, float(wx[pick]),
                   median, scale, len(ref), note)


def _without_outliers(ref: np.ndarray, cfg: JudgeConfig) -> np.ndarray:
    """The trailing reference without points beyond ``exclude_z`` (an earlier incident)."""
    median = np.median(ref)
    mad = np.median(np.abs(ref - median))
    scale = max(MAD_TO_SIGMA * mad, cfg.rel_floor * abs(median))
    if scale <= 0:
        return ref
    return ref[np.abs(ref - median) <= cfg.exclude_z * scale]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
