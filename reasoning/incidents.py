"""Incidents: alerts grouped the way Alertmanager groups them, and when to (re)analyse.

An incident starts from Alertmanager's own grouping: its ``groupKey`` (every alert of a
webhook notification shares it). Alerts from elsewhere (no groupKey) are grouped by the
values of the configured ``group_by`` labels, and a group that has been quiet for longer
than ``window`` (in event time) starts a new incident. An incident whose alerts are all
resolved is resolved; the next firing alert of its group opens a new one.

Whether to (re)run RCA is a pure function of the incident's state and the clock —
:func:`should_analyse` — following Alertmanager's ``group_wait`` / ``group_interval``:
wait ``group_wait`` after the first alert so its siblings arrive, then re-analyse when new
alerts joined and ``group_interval`` has passed since the last analysis. The clock is
injected, so tests are deterministic.

Merging incidents that the topology shows to be one problem (same top root cause) is a
separate step, :func:`merge_candidates`, whose decision carries its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from kg.facts import now_utc

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class GroupingConfig:
    group_by: tuple[str, ...] = ("alertname", "namespace", "cluster")
    window: timedelta = timedelta(minutes=15)
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class AlertRef:
    """What grouping needs of an alert occurrence."""

    iri: str
    labels: Mapping[str, str]
    starts_at: datetime
    status: str = "firing"
    group_key: str | None = None
    entity: str | None = None  # the resolved entity the alert is about
    definition: str | None = None  # its alert definition (event type)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


@dataclass
class Incident:
    key: str  # stable: group + first alert time
    group: str
    started: datetime
    alerts: dict[str, AlertRef] = field(default_factory=dict)
    last_alert_at: datetime | None = None
    analysed_at: datetime | None = None
    analysed_alerts: int = 0

    @property
    def status(self) -> str:
        if self.alerts and all(a.status == "resolved" for a in self.alerts.values()):
            return "resolved"
        return "analysed" if self.analysed_at else "open"


def group_of(alert: AlertRef, config: GroupingConfig) -> str:
    """Alertmanager's groupKey, else a key of the ``group_by`` label values."""
    if alert.group_key:
        return alert.group_key
    values = ",".join(f"{k}={alert.labels.get(k, '')}" for k in config.group_by)
    return "{}:{" + values + "}"


def incident_key(group: str, started: datetime) -> str:
    digest = hashlib.sha1(group.encode()).hexdigest()[:16]
    return f"{digest}-{started.strftime('%Y%m%dT%H%M%SZ')}"


class IncidentGrouper:
    """Assigns alerts to incidents. The state is in memory; after a restart,
    :meth:`restore` seeds it with the incidents read back from the graph."""

    def __init__(self, config: GroupingConfig | None = None, clock: Clock = now_utc) -> None:
        self.config = config or GroupingConfig()
        self.clock = clock
        self.incidents: dict[str, Incident] = {}
        self._open: dict[str, str] = {}  # group -> key of its open incident

    def restore(self, incidents: Sequence[Incident]) -> None:
        """Take back incidents known before a restart: each group continues its latest
        incident (by start), so alerts that arrive again or join later land where they
        would have without the restart."""
        for inc in sorted(incidents, key=lambda i: (i.started, i.key)):
            self.incidents[inc.key] = inc
            self._open[inc.group] = inc.key

    def add(self, alert: AlertRef) -> Incident:
        group = group_of(alert, self.config)
        key = self._open.get(group)
        inc = self.incidents.get(key) if key else None
        if inc is not None and alert.iri not in inc.alerts:
            quiet = inc.last_alert_at and alert.starts_at - inc.last_alert_at > self.config.window
            if inc.status == "resolved" or (not alert.group_key and quiet):
                inc = None
        if inc is None:
            inc = Incident(incident_key(group, alert.starts_at), group, alert.starts_at)
            self.incidents[inc.key] = inc
            self._open[group] = inc.key
        inc.alerts[alert.iri] = alert
        if inc.last_alert_at is None or alert.starts_at > inc.last_alert_at:
            inc.last_alert_at = alert.starts_at
        return inc


def should_analyse(inc: Incident, now: datetime, config: GroupingConfig) -> tuple[bool, str]:
    """Whether to run RCA for ``inc`` now, and why (a pure function; see the module doc)."""
    if inc.status == "resolved":
        return False, "resolved"
    if inc.analysed_at is None:
        if now - inc.started < config.group_wait:
            return False, "waiting for group_wait"
        return True, "first analysis after group_wait"
    if len(inc.alerts) == inc.analysed_alerts:
        return False, "no new alerts since the last analysis"
    if now - inc.analysed_at < config.group_interval:
        return False, "new alerts; waiting for group_interval"
    return True, "new alerts after group_interval"


@dataclass(frozen=True)
class Merge:
    into: str
    merged: str
    reason: str


def merge_candidates(top_causes: Mapping[str, Sequence[str]]) -> list[Merge]:
    """Incidents whose top root cause is the same entity are one problem: merge each into
    the earliest (by key order) with that cause; ``top_causes`` maps incident key → ranked
    candidate IRIs."""
    first_with: dict[str, str] = {}
    merges = []
    for key in sorted(top_causes):
        causes = top_causes[key]
        if not causes:
            continue
        top = causes[0]
        if top in first_with:
            merges.append(Merge(first_with[top], key,
                                f"same most likely root cause {top}"))
        else:
            first_with[top] = key
    return merges
