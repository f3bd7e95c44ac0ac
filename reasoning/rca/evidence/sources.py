"""Where RCA gets the raw series of an incident: the contract every series source meets.

RCA judges an entity's series over the incident window against a reference window
(:mod:`reasoning.rca.evidence.judge`). The samples come from a :class:`SeriesSource`: the
local time-series store beside the graph (:class:`LocalSeries`, samples ingested through
``autocnc ingest metrics|traces``) or the operator's own Prometheus, asked per incident
(:mod:`reasoning.rca.evidence.prometheus`). A source is given the entities of the incident
and a time range and returns, per entity, the series it has about them, with their samples.

A source never raises for data it cannot get: what it could not read (a Prometheus that did
not answer, a query that hit a limit) goes into :attr:`SeriesFetch.problems`, so the answer
says which evidence is missing instead of failing or staying silent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class SeriesRef:
    """One series about one graph entity."""

    entity: str  # IRI of the entity the series observes
    metric: str  # metric name (e.g. ``trace_latency_seconds``, ``container_cpu_usage``)
    labels: Mapping[str, str]  # the series' labels (without ``__name__``)
    source: str  # the source's name: ``local``, ``prometheus``
    key: str  # its id in that source: the local series id, or the PromQL series selector


@dataclass(frozen=True)
class SeriesData:
    ref: SeriesRef
    ts_ms: np.ndarray  # int64, Unix epoch milliseconds, ascending
    values: np.ndarray  # float64, aligned with ts_ms (NaN allowed)


@dataclass
class SeriesFetch:
    series: list[SeriesData] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read, and why


class SeriesSource(Protocol):
    """A place RCA reads raw series from (picked by name from configuration)."""

    name: str

    def fetch(self, entities: Collection[str], start: datetime, end: datetime
              ) -> SeriesFetch:
        """The series about ``entities`` (IRIs) with their samples in ``[start, end]``."""
        ...


class SeriesCatalog(Protocol):
    """What the local source needs of the graph: the series that observe an entity."""

    def series_of(self, entity: str) -> list[tuple[str, str, dict[str, str]]]:
        """``(series id, metric name, labels)`` of the series that observe ``entity``."""
        ...


@dataclass
class LocalSeries:
    """Samples from the local time-series store (:mod:`kg.timeseries`), found through the
    ``MetricSeries`` entities that ``observes`` each entity in the graph."""

    catalog: SeriesCatalog
    store_of: object  # () -> kg.timeseries.TimeSeriesStore | None (opened lazily)
    name: str = "local"

    def fetch(self, entities: Collection[str], start: datetime, end: datetime
              ) -> SeriesFetch:
        refs: dict[str, SeriesRef] = {}
        for entity in entities:
            for sid, metric, labels in self.catalog.series_of(entity):
                refs[sid] = SeriesRef(entity, metric, labels, self.name, sid)
        out = SeriesFetch()
        if not refs:
            return out
        store = self.store_of()  # type: ignore[operator]
        if store is None:
            out.problems.append("local: no time-series store in this data directory")
            return out
        by_id = store.read(refs, start, end).split()
        for sid, ref in refs.items():
            ts, values = by_id.get(sid, (np.empty(0, np.int64), np.empty(0)))
            out.series.append(SeriesData(ref, ts, values))
        return out
