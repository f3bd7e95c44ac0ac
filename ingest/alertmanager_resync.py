"""The resync with Alertmanager as a reconcile: desired (the alerts Alertmanager holds now)
against observed (the graph's open occurrences from Alertmanager in the scope), keyed by the
alert occurrence (fingerprint and startsAt), acting only on the difference.

:func:`plan_resync` is a pure function of both sides and the clock; it decides per
occurrence (a table, tested as one in ``tests/test_alert_resync.py``):

- Alertmanager holds it, the graph has it open: none (``unchanged``).
- Alertmanager holds it active or unprocessed, the graph has nothing: create it firing.
- Alertmanager holds it suppressed (silenced, inhibited), the graph has nothing: none, as
  the webhook would not have sent it (``suppressed``).
- Alertmanager holds it, the graph has it closed by a resync: reopen it (the resync
  closed it too early).
- Alertmanager holds it, the graph has it closed by Alertmanager's own resolved report:
  none (``closedUpstream``; as for the webhook, a later firing does not reopen it).
- Alertmanager holds the same fingerprint with a later startsAt, the graph has it open:
  close it at that later start (``resync-refired``).
- Alertmanager holds nothing of it, the graph has it open since before Alertmanager was
  read: close it at the resync time (``resync-missing``) once Alertmanager has been up
  ``alertmanager_settle_s``, else leave it (``deferred``).
- Alertmanager holds nothing of it, the graph has it open since after Alertmanager was
  read: none (the webhook was quicker than the resync).

Alertmanager's API gives times to the millisecond (the webhook to the nanosecond): the
occurrences are matched on fingerprint and startsAt to the millisecond.

:func:`payloads` turns the actions into webhook notifications (payload version 4), one per
group key and kind of action, which the caller writes through the webhook's own write path
(:class:`api.alert_receiver.AlertReceiver`) so that created alerts join incidents as
delivered ones do: creations carry Alertmanager's data and the group key its routing tree
gives (:mod:`ingest.alertmanager_routes`); closings carry what the graph holds, with the
options ``closed_by`` (:data:`ingest.alertmanager.CLOSED_BY`) or ``reopen``. Every step is
idempotent: a plan made again after its writes finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ingest.alertmanager import VERSION
from kg.alertmanager import AlertmanagerAlert

Key = tuple[str, datetime]  # fingerprint, startsAt to the millisecond
ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_ALERTS_PER_PAYLOAD = 500


def ms(t: datetime) -> datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Desired:
    """An alert Alertmanager holds, with the route it takes to AutoCNC."""

    alert: AlertmanagerAlert
    group_key: str
    receiver: str

    @property
    def key(self) -> Key:
        return (self.alert.fingerprint, ms(self.alert.starts_at))


@dataclass(frozen=True)
class Observed:
    """An open alert occurrence of the graph, as the webhook wrote it."""

    iri: str
    fingerprint: str
    starts_at: datetime
    first_seen: datetime | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    group_key: str
    generator_url: str = ""
    receiver: str = ""
    external_url: str = ""

    @property
    def key(self) -> Key:
        return (self.fingerprint, ms(self.starts_at))


@dataclass(frozen=True)
class Action:
    op: Literal["create", "close", "reopen"]
    reason: str  # new | resync-missing | resync-refired | reappeared
    desired: Desired | None = None
    observed: Observed | None = None
    at: datetime | None = None  # the end time of a close


@dataclass
class ResyncPlan:
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    suppressed: int = 0
    deferred: int = 0
    closed_upstream: int = 0

    def counts(self) -> dict[str, int]:
        by = {"created": 0, "closedMissing": 0, "closedRefired": 0, "reopened": 0}
        for a in self.actions:
            name = {"create": "created", "reopen": "reopened"}.get(a.op) or (
                "closedMissing" if a.reason == "resync-missing" else "closedRefired")
            by[name] += 1
        return {**by, "updated": by["closedMissing"] + by["closedRefired"] + by["reopened"],
                "unchanged": self.unchanged, "suppressed": self.suppressed,
                "deferred": self.deferred, "closedUpstream": self.closed_upstream}


def plan_resync(desired: Iterable[Desired], observed: Iterable[Observed],
                closed: Mapping[Key, str | None], *, now: datetime, read_at: datetime,
                close_missing: bool) -> ResyncPlan:
    """What to do so that the graph holds what Alertmanager holds (see the module doc).

    ``closed``: occurrences of the desired keys that the graph has closed, with their
    ``closedBy`` (None: closed by Alertmanager's own report). ``read_at``: when
    Alertmanager was read (occurrences written later are not judged missing).
    ``close_missing``: whether Alertmanager has been up long enough to trust that an
    alert it does not hold has ended."""
    want = {d.key: d for d in desired}
    latest: dict[str, datetime] = {}
    for fp, starts in want:
        latest[fp] = max(starts, latest.get(fp, starts))
    plan = ResyncPlan()
    have: set[Key] = set()
    for o in sorted(observed, key=lambda o: (o.fingerprint, o.starts_at, o.iri)):
        have.add(o.key)
        if o.key in want:
            plan.unchanged += 1
            continue
        later = latest.get(o.fingerprint)
        if later is not None and later > o.key[1]:
            plan.actions.append(Action("close", "resync-refired", observed=o,
                                       at=max(o.starts_at, min(later, now))))
        elif o.first_seen is not None and o.first_seen >= read_at:
            plan.unchanged += 1
        elif close_missing:
            plan.actions.append(Action("close", "resync-missing", observed=o,
                                       at=max(o.starts_at, now)))
        else:
            plan.deferred += 1
    for key in sorted(want):
        if key in have:
            continue
        d = want[key]
        if key in closed:
            if (closed[key] or "").startswith("resync-"):
                plan.actions.append(Action("reopen", "reappeared", desired=d))
            else:
                plan.closed_upstream += 1
        elif d.alert.state == "suppressed":
            plan.suppressed += 1
        else:
            plan.actions.append(Action("create", "new", desired=d))
    return plan


def payloads(plan: ResyncPlan, *, external_url: str,
             max_alerts: int = MAX_ALERTS_PER_PAYLOAD
             ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The plan's actions as webhook notifications with their receiver options, one per
    (kind of action, group key, receiver), at most ``max_alerts`` alerts each."""
    groups: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = {}
    for a in plan.actions:
        if a.desired is not None:
            d = a.desired
            head = (a.op, a.reason, d.group_key, d.receiver, external_url)
            alert = _alert("firing", d.alert.labels, d.alert.annotations, d.alert.starts_at,
                           None, d.alert.generator_url, d.alert.fingerprint)
        else:
            o = a.observed
            assert o is not None and a.at is not None
            head = (a.op, a.reason, o.group_key, o.receiver, o.external_url)
            alert = _alert("resolved", o.labels, o.annotations, o.starts_at, a.at,
                           o.generator_url, o.fingerprint)
        groups.setdefault(head, []).append(alert)
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for (op, reason, group_key, receiver, url), alerts in groups.items():
        options: dict[str, Any] = ({"closed_by": reason} if op == "close" else
                                   {"reopen": True} if op == "reopen" else {})
        for i in range(0, len(alerts), max_alerts):
            chunk = alerts[i:i + max_alerts]
            out.append(({
                "version": VERSION, "groupKey": group_key,
                "status": "resolved" if op == "close" else "firing", "receiver": receiver,
                "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": url, "alerts": chunk, "truncatedAlerts": 0}, options))
    return out


def _alert(status: str, labels: Mapping[str, str], annotations: Mapping[str, str],
           starts: datetime, ends: datetime | None, generator_url: str, fingerprint: str
           ) -> dict[str, Any]:
    return {"status": status, "labels": dict(labels), "annotations": dict(annotations),
            "startsAt": _iso(starts), "endsAt": _iso(ends) if ends else ZERO_TIME,
            "generatorURL": generator_url, "fingerprint": fingerprint}


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def annotations_of(summary: str | None, description: str | None, runbook_url: str | None,
                   attributes: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """An occurrence's annotations and its delivery fields (``generatorURL``, ``receiver``,
    ``externalURL``) taken back from what the receiver stored (``attributes`` holds the
    annotations without a property of their own, and the delivery fields)."""
    delivery = {k: str(attributes.get(k) or "") for k in ("generatorURL", "receiver",
                                                            "externalURL")}
    ann = {str(k): str(v) for k, v in attributes.items() if k not in delivery}
    for name, value in (("summary", summary), ("description", description),
                        ("runbook_url", runbook_url)):
        if value:
            ann[name] = value
    return ann, delivery


def desired_of(alerts: Sequence[AlertmanagerAlert],
               group_key: Callable[[AlertmanagerAlert], tuple[str, str]],
               receivers: Sequence[str]) -> list[Desired]:
    """The alerts that reach AutoCNC (routed to one of ``receivers``; all of them when
    empty), each with the group key and receiver ``group_key(alert)`` gives."""
    wanted = set(receivers)
    out = []
    for a in alerts:
        if wanted and not wanted.intersection(a.receivers):
            continue
        key, receiver = group_key(a)
        out.append(Desired(a, key, receiver))
    return out
