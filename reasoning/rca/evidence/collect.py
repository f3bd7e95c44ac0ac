"""Gather an incident's evidence per entity: judged series, and the events about it.

For the entities of an incident (candidates, what they depend on, what they can impact)
:func:`collect` asks every series source for their series over the reference and incident
windows, judges each (:mod:`reasoning.rca.evidence.judge`) and folds the verdicts into
per-kind evidence (:class:`reasoning.rca.evidence.origin.EntityEvidence`), weighted by
timeliness against the first symptom. Events stored in the graph add what series cannot
say:

- an ``Anomaly`` found at ingest counts only when the series it was detected in was not
  judged here (a series judged against a clean reference says more than a trailing
  detector); its score is ``log(z / threshold)`` like a verdict's;
- alerts and alarms about an entity are ``alert`` evidence of strength ``alert_z``;
- log events are ``logs`` evidence, judged against the reference too: the frequency of
  each warning- or error-level template of an entity is a series (its count per ingest
  window, 0 in windows where the entity logged other templates) judged like any other
  (``log_template_count{template, level}``); an error burst counts; a new or rare template
  counts only when the entity's logs were already seen in the reference period (a stream
  first ingested with the incident makes every template "new").

Everything that could not be judged is kept (:attr:`IncidentEvidence.unjudged`), so the
answer can say per candidate which evidence was present, normal, unjudged or missing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from reasoning.rca.engine import Evidence
from reasoning.rca.evidence.judge import JudgeConfig, Verdict, judge
from reasoning.rca.evidence.kinds import classify
from reasoning.rca.evidence.origin import EntityEvidence, KindEvidence, timeliness
from reasoning.rca.evidence.sources import SeriesData, SeriesFetch, SeriesRef, SeriesSource

EVENT_ROLES = {"alert": "propagating", "logs": "propagating"}


@dataclass(frozen=True)
class Timing:
    """How evidence is weighted by when it started, relative to the first symptom: 1 from
    ``before_s`` before it on, decaying with ``early_scale_s`` for earlier onsets (a
    condition that predates the incident) and ``late_scale_s`` for later ones."""

    before_s: float = 180.0
    early_scale_s: float = 120.0
    late_scale_s: float = 600.0

    def weight(self, onset: datetime | None, first: datetime) -> float:
        if onset is None:
            return 1.0
        return timeliness((onset - first).total_seconds(), self.before_s,
                          self.early_scale_s, self.late_scale_s)


@dataclass(frozen=True)
class LogCount:
    """How often one template was logged by an entity in one ingest window."""

    entity: str
    at: datetime
    count: float
    template: str | None
    level: str | None


SEVERE_LEVELS = frozenset({"warn", "warning", "error", "err", "severe", "fatal", "critical",
                           "crit", "alert", "emerg", "emergency", "panic"})


@dataclass
class IncidentEvidence:
    entities: dict[str, EntityEvidence] = field(default_factory=dict)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)  # entity -> all
    problems: list[str] = field(default_factory=list)  # what the sources could not read
    sources: list[str] = field(default_factory=list)  # the sources asked
    series: int = 0  # series fetched

    def of(self, entity: str) -> EntityEvidence:
        return self.entities.setdefault(entity, EntityEvidence())


def collect(entities: Collection[str], sources: Sequence[SeriesSource],
            symptoms: tuple[datetime, datetime], reference: tuple[datetime, datetime] | None,
            events: Sequence[Evidence], judge_cfg: JudgeConfig, timing: Timing,
            alert_z: float = 10.0, log_counts: Sequence[LogCount] = ()) -> IncidentEvidence:
    """The evidence of ``entities`` for an incident whose symptoms started between
    ``symptoms[0]`` and ``symptoms[1]`` (see the module doc)."""
    first, last = symptoms
    out = IncidentEvidence(sources=[s.name for s in sources])
    if reference is not None:
        start = min(reference[0], first - timedelta(seconds=judge_cfg.before_s))
    else:
        start = first - timedelta(seconds=judge_cfg.trailing_s + judge_cfg.before_s)
    # coarse series widen their window (JudgeConfig.window); fetch enough for 5-minute data
    fetch_from = start - timedelta(seconds=judge_cfg.window_steps * 300)
    fetch_to = last + timedelta(seconds=max(judge_cfg.after_s, judge_cfg.window_steps * 300))
    if reference is not None:  # a reference may lie after the incident (a quiet period)
        fetch_to = max(fetch_to, reference[1])
    judged_series: set[str] = set()
    fetches = [source.fetch(entities, fetch_from, fetch_to) for source in sources]
    fetches.append(SeriesFetch(_log_series(entities, log_counts)))
    for fetched in fetches:
        out.problems.extend(fetched.problems)
        out.series += len(fetched.series)
        for data in fetched.series:
            verdict = judge(data, symptoms, reference, judge_cfg)
            out.verdicts.setdefault(data.ref.entity, []).append(verdict)
            ev = out.of(data.ref.entity)
            ev.monitored = True
            if verdict.status != "judged":
                continue
            judged_series.add(data.ref.key)
            ev.observed.add(verdict.kind.name)
            if verdict.anomalous and verdict.kind.role != "neutral":
                ev.add(verdict.kind.name, verdict.kind.role, KindEvidence(
                    verdict.score * timing.weight(verdict.onset, first), verdict.onset,
                    verdict, f"{data.ref.metric} {_labels(data.ref.labels)}".strip()))
    ref_from = reference[0] if reference is not None else start
    ref_to = reference[1] if reference is not None else first - timedelta(
        seconds=judge_cfg.before_s)
    logged_before = {e.entity for e in events if e.kind == "LogEvent"
                     and ref_from <= e.at <= ref_to}
    window_from = first - timedelta(seconds=judge_cfg.before_s)
    window_to = last + timedelta(seconds=judge_cfg.after_s)
    for e in events:
        if e.entity not in entities or not window_from <= e.at <= window_to:
            continue
        if e.kind == "LogEvent" and (e.detail == "template-count" or (
                e.detail in ("new-template", "rare-template")
                and e.entity not in logged_before)):
            continue
        _event(out.of(e.entity), e, judged_series, judge_cfg, timing, first, alert_z)
    return out


def _log_series(entities: Collection[str], counts: Sequence[LogCount]) -> list[SeriesData]:
    """Per entity and warning/error template, its count per window the entity logged in."""
    windows: dict[str, set[int]] = {}
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    for c in counts:
        if c.entity not in entities:
            continue
        ms = int(c.at.timestamp() * 1000)
        windows.setdefault(c.entity, set()).add(ms)
        level = (c.level or "").lower()
        if c.template and level in SEVERE_LEVELS:
            cell = cells.setdefault((c.entity, c.template, level), {})
            cell[ms] = cell.get(ms, 0.0) + float(c.count)
    out = []
    for (entity, template, level), cell in cells.items():
        ts = np.array(sorted(windows[entity]), dtype=np.int64)
        values = np.array([cell.get(int(t), 0.0) for t in ts])
        labels = {"template": template.rsplit("/", 1)[-1], "level": level}
        out.append(SeriesData(SeriesRef(entity, "log_template_count", labels, "logs",
                                        f"{entity}|{template}"), ts, values))
    return out


def _event(ev: EntityEvidence, e: Evidence, judged: Collection[str],
           cfg: JudgeConfig, timing: Timing, first: datetime, alert_z: float) -> None:
    weight = timing.weight(e.at, first)
    if e.kind == "Anomaly":
        if e.series_id in judged:
            return  # judged here against a clean reference: that verdict stands
        kind = classify(e.detail)
        if kind.role == "neutral" or (kind.sign and e.direction and
                                      e.direction != ("up" if kind.sign > 0 else "down")):
            return
        score = math.log(abs(e.score) / cfg.threshold) if abs(e.score) > cfg.threshold else 0.0
        ev.observed.add(kind.name)
        if score > 0:
            ev.add(kind.name, kind.role, KindEvidence(score * weight, e.at, None, e.detail))
    elif e.kind in ("Alert", "Alarm"):
        ev.add("alert", EVENT_ROLES["alert"], KindEvidence(
            math.log(alert_z / cfg.threshold) * weight, e.at, None, f"{e.kind} {e.detail}"))
    elif e.kind == "LogEvent":
        score = math.log1p(max(e.score, 1.0) / cfg.threshold)
        ev.add("logs", EVENT_ROLES["logs"], KindEvidence(score * weight, e.at, None,
                                                          f"log {e.detail}"))


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
