"""Series identity for the metrics ingest: the catalogue of series seen in one run.

A series is ``(scope, metric name, labels)``; its id is :func:`kg.timeseries.series_id`.
Parsers register series here and emit samples as integer indexes into the catalogue, so
label parsing and hashing happen once per series, not once per sample.

Units and counters, when the input does not say (Prometheus ``# UNIT`` / ``# TYPE`` lines):
the metric name's suffix decides, following the Prometheus naming conventions —
``_total``, ``_count`` and ``_bucket`` are counters; the unit comes from the base unit
suffix (``_seconds`` → ``s``, ``_bytes`` → ``bytes``, ``_ratio`` → ``ratio``, ...) after
``_total`` / ``_sum`` is removed, and ``_count`` / ``_bucket`` have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ingest.resolve import Resolution
from kg.facts import MAX_VALUE_BYTES, too_long
from kg.timeseries import series_id

Labels = tuple[tuple[str, str], ...]  # sorted by label name

COUNTER_SUFFIXES = ("_total", "_count", "_bucket")
UNIT_SUFFIXES = {
    "_seconds": "s", "_milliseconds": "ms", "_microseconds": "us", "_nanoseconds": "ns",
    "_bytes": "bytes", "_bits": "bits", "_ratio": "ratio", "_percent": "%",
    "_celsius": "Cel", "_volts": "V", "_amperes": "A", "_joules": "J", "_watts": "W",
    "_hertz": "Hz", "_meters": "m", "_grams": "g", "_packets": "packets",
    "_requests": "requests", "_errors": "errors",
}
MIN_MS = 0  # 1970-01-01
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds


def unit_from_name(metric: str) -> str | None:
    if metric.endswith(("_count", "_bucket")):
        return None
    for strip in ("_total", "_sum"):
        if metric.endswith(strip):
            metric = metric[: -len(strip)]
            break
    for suffix, unit in UNIT_SUFFIXES.items():
        if metric.endswith(suffix):
            return unit
    return None


@dataclass
class SeriesInfo:
    sid: str
    scope: str
    metric: str
    labels: dict[str, str]
    counter: bool
    unit: str | None
    file: str  # where the series was first seen (for the record of its facts)
    where: str
    fmt: str  # the input format, part of the facts' source
    description: str | None = None
    resolution: Resolution | None = None

    @property
    def source(self) -> str:
        return f"metrics/{self.fmt}:{self.scope}"

    @property
    def labels_json(self) -> str:
        return json.dumps(self.labels, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))

    @property
    def display_name(self) -> str:
        """``metric{label="value",...}`` as Prometheus writes it."""
        if not self.labels:
            return self.metric
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(self.labels.items()))
        return f"{self.metric}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class SeriesCatalog:
    """Series seen in one ingest run, by (scope, metric, labels) -> index."""

    def __init__(self, max_value_bytes: int = MAX_VALUE_BYTES) -> None:
        self.items: list[SeriesInfo] = []
        self._by_key: dict[tuple[str, str, Labels], int] = {}
        self.max_value_bytes = max_value_bytes

    def __len__(self) -> int:
        return len(self.items)

    def index(self, scope: str, metric: str, labels: Labels, *, file: str, where: str,
              fmt: str, counter: bool | None = None, unit: str | None = None,
              description: str | None = None) -> int:
        key = (scope, metric, labels)
        found = self._by_key.get(key)
        if found is not None:
            info = self.items[found]
            info.unit = unit or info.unit
            info.description = description or info.description
            return found
        self._check_sizes(metric, labels)
        label_map = dict(labels)
        self.items.append(SeriesInfo(
            series_id(scope, metric, label_map), scope, metric, label_map,
            metric.endswith(COUNTER_SUFFIXES) if counter is None else counter,
            unit or unit_from_name(metric), file, where, fmt, description))
        self._by_key[key] = len(self.items) - 1
        return len(self.items) - 1


    def _check_sizes(self, metric: str, labels: Labels) -> None:
        """ValueError for a metric name, label name or label value over the limit (its
        line is rejected before any sample of it is stored)."""
        limit = self.max_value_bytes
        checks = [("metric name", metric)]
        for name, value in labels:
            checks += [("label name", name), (f"label {name[:100]!r}", value)]
        for what, text in checks:
            if too_long(text, limit):
                raise ValueError(f"{what} is {len(text.encode('utf-8', 'surrogatepass'))} "
                                 f"bytes, over the limit of {limit} bytes per value "
                                 "(setting max_value_bytes)")


@dataclass
class Chunk:
    """Samples parsed from an input: series indexes, epoch milliseconds, values."""

    idx: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    val: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def concat(cls, chunks: list[Chunk]) -> Chunk:
        if not chunks:
            return cls()
        if len(chunks) == 1:
            return chunks[0]
        return cls(np.concatenate([c.idx for c in chunks]),
                   np.concatenate([c.ts for c in chunks]),
                   np.concatenate([c.val for c in chunks]))
