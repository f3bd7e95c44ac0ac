"""Alertmanager webhook notifications (payload version 4) → ``Alert`` occurrences.

A notification carries the alerts of one Alertmanager group. Each alert becomes one
occurrence keyed ``{fingerprint}/{startsAt}``: the fingerprint is a hash of the label set
and repeats when the same alert fires again later, ``startsAt`` tells the firings apart.

- firing: the occurrence with ``alertStatus`` firing, ``startTime``, ``validFrom`` =
  startsAt. A repeated delivery carries the same content, so only its ``lastSeen`` moves
  (the repeat is the evidence it still fires). ``endsAt`` of a firing alert is
  Alertmanager's expected end and changes on every delivery; it is not stored.
- resolved: the same occurrence closed: ``alertStatus`` resolved, ``endTime`` and
  ``validTo`` = endsAt. A firing delivery that arrives after the resolved one (a retry out
  of order) does not reopen it; it is counted as ``staleFiring``.
- the resync with Alertmanager (:mod:`api.alert_resync`) writes through here too: option
  ``closed_by`` (``resync-missing`` / ``resync-refired``) marks the resolved alerts it closes
  without Alertmanager's own report (stored as ``closedBy``; a later resolved delivery with
  the real end time replaces it, and an occurrence already closed is left as it is, counted
  ``alreadyClosed``); option ``reopen`` lets a firing alert reopen an occurrence (one the
  resync closed before Alertmanager held the alert again).
- ``instanceOf`` the AlertDefinition of its rule in the rules' scope (option
  ``rules_scope``, default the scope): among the definitions named by ``alertname`` the one
  whose static labels the alert carries (the most of them). None: no relation, counted as
  ``definitionMissing``.
- ``aboutEntity`` the entity its labels name (:mod:`ingest.resolve`: subject labels first,
  then service/instance/job), with edge property ``resolution`` exact or inferred. A pod
  the graph does not know, mapped to its workload by its name, is created as a Pod the
  workload ``manages`` (resolution inferred) and the alert is about that pod. Labels that
  resolve to nothing stay in the alert's ``labels``; it gets no aboutEntity, is counted as
  ``unresolved`` and listed in the report notes.

:class:`AlertmanagerReceiver` keeps the resolver's and the definition lookup's caches
between notifications (call ``forget()`` after topology or rules change); validation
raises :class:`WebhookPayloadError` naming the JSON pointer of the first bad field before
anything is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.base import IngestContext, IngestError, Input, Record
from ingest.resolve import Resolution, Resolver, candidates
from kg.facts import Entity, Relation
from kg.store.base import FactState

FORMAT = "alertmanager"
VERSION = "4"
STATUSES = ("firing", "resolved")
# how the resync closes an occurrence whose end Alertmanager did not report (option closed_by)
CLOSED_BY = ("resync-missing", "resync-refired")
MAX_NOTES = 200  # unresolved alerts listed in the report notes; the count has them all
_TOP_FIELDS: tuple[tuple[str, type], ...] = (
    ("version", str), ("groupKey", str), ("status", str), ("receiver", str),
    ("groupLabels", dict), ("commonLabels", dict), ("commonAnnotations", dict),
    ("externalURL", str), ("alerts", list))
_ALERT_FIELDS: tuple[tuple[str, type], ...] = (
    ("status", str), ("labels", dict), ("annotations", dict), ("startsAt", str),
    ("endsAt", str), ("generatorURL", str), ("fingerprint", str))
_NAMED_ANNOTATIONS = ("summary", "description", "runbook_url")


class WebhookPayloadError(IngestError):
    """The webhook body is not an Alertmanager v4 payload; ``pointer`` names the bad field
    (a JSON pointer, ``""`` for the whole body). Nothing of it was written."""

    def __init__(self, pointer: str, reason: str) -> None:
        self.pointer = pointer
        self.reason = reason
        super().__init__(f"{pointer or '/'}: {reason}")


# -- validation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookAlert:
    index: int
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None: "0001-01-01T00:00:00Z", not ended
    generator_url: str
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.fingerprint}/{_stamp(self.starts_at)}"


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    external_url: str
    alerts: tuple[WebhookAlert, ...]


def parse_payload(payload: Any) -> Notification:
    """The validated notification, or WebhookPayloadError for the first bad field."""
    if not isinstance(payload, dict):
        raise WebhookPayloadError("", "the body must be a JSON object")
    for name, typ in _TOP_FIELDS:
        _need(payload, name, typ, "")
    if payload["version"] != VERSION:
        raise WebhookPayloadError("/version", f"unsupported version {payload['version']!r}; "
                                  f"Alertmanager webhook payload version {VERSION} is accepted")
    if payload["status"] not in STATUSES:
        raise WebhookPayloadError("/status", "must be firing or resolved")
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        _string_map(payload[name], f"/{name}")
    alerts = tuple(_alert(i, raw) for i, raw in enumerate(payload["alerts"]))
    return Notification(payload["groupKey"], payload["status"], payload["receiver"],
                        payload["externalURL"], alerts)


def _need(obj: Mapping[str, Any], name: str, typ: type, at: str) -> None:
    if name not in obj:
        raise WebhookPayloadError(f"{at}/{name}", "required field is missing")
    if not isinstance(obj[name], typ):
        want = {"str": "a string", "dict": "an object", "list": "an array"}[typ.__name__]
        raise WebhookPayloadError(f"{at}/{name}", f"must be {want}")


def _string_map(obj: Mapping[str, Any], at: str) -> dict[str, str]:
    for k, v in obj.items():
        if not isinstance(v, str):
            esc = k.replace("~", "~0").replace("/", "~1")
            raise WebhookPayloadError(f"{at}/{esc}", "label and annotation values must be "
                                      "strings")
    return obj  # type: ignore[return-value]


def _alert(i: int, raw: Any) -> WebhookAlert:
    at = f"/alerts/{i}"
    if not isinstance(raw, dict):
        raise WebhookPayloadError(at, "an alert must be an object")
    for name, typ in _ALERT_FIELDS:
        _need(raw, name, typ, at)
    if raw["status"] not in STATUSES:
        raise WebhookPayloadError(f"{at}/status", "must be firing or resolved")
    if not raw["fingerprint"].strip():
        raise WebhookPayloadError(f"{at}/fingerprint", "must not be empty")
    starts = _time(raw["startsAt"], f"{at}/startsAt")
    if starts is None:
        raise WebhookPayloadError(f"{at}/startsAt", "must be a real time, not the zero time")
    ends = _time(raw["endsAt"], f"{at}/endsAt")
    if raw["status"] == "resolved" and ends is None:
        raise WebhookPayloadError(f"{at}/endsAt", "a resolved alert needs its end time")
    return WebhookAlert(i, raw["status"], _string_map(raw["labels"], f"{at}/labels"),
                        _string_map(raw["annotations"], f"{at}/annotations"), starts, ends,
                        raw["generatorURL"], raw["fingerprint"].strip())


def _time(text: str, at: str) -> datetime | None:
    """RFC 3339 with a zone, in UTC; the zero time (year 1) is None."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        raise WebhookPayloadError(at, f"{text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise WebhookPayloadError(at, f"{text!r} has no time zone")
    return None if value.year <= 1 else value.astimezone(UTC)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- definitions by name ---------------------------------------------------------------------

@dataclass(frozen=True)
class DefinitionRef:
    iri: str
    labels: Mapping[str, str]


class DefinitionIndex:
    """AlertDefinitions by (scope, alertname), one query for the names not yet known.

    Names found stay cached until ``forget()``; names not found are asked again after
    ``negative_ttl_s`` so that rules ingested meanwhile are picked up.
    """

    _QUERY = ("MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND d.ingestScope = $scope "
              "AND d.name IN $names AND d.validTo IS NULL RETURN d.iri, d.name, d.labels")

    def __init__(self, kg: Any, *, negative_ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kg = kg
        self.negative_ttl_s = negative_ttl_s
        self.clock = clock
        self._found: dict[tuple[str, str], list[DefinitionRef]] = {}
        self._missing: dict[tuple[str, str], float] = {}

    def lookup(self, scope: str, names: Sequence[str]) -> dict[str, list[DefinitionRef]]:
        now = self.clock()
        todo = sorted({n for n in names if (scope, n) not in self._found
                       and now - self._missing.get((scope, n), -1e18) > self.negative_ttl_s})
        if todo:
            # the engine's own read (the writer's connection): an operator query's read-only
            # handle would be reopened after every write, replaying the store's log
            rows = self.kg.store.read(self._QUERY, {"scope": scope, "names": todo}).rows
            got: dict[str, list[DefinitionRef]] = {}
            for iri, name, labels in sorted(rows, key=lambda r: r[0]):
                got.setdefault(name, []).append(DefinitionRef(iri, json.loads(labels or "{}")))
            for name in todo:
                if name in got:
                    self._found[(scope, name)] = got[name]
                    self._missing.pop((scope, name), None)
                else:
                    self._missing[(scope, name)] = now
        return {n: self._found.get((scope, n), []) for n in names}

    def forget(self) -> None:
        self._found.clear()
        self._missing.clear()


def best_definition(defs: Sequence[DefinitionRef], labels: Mapping[str, str]
                    ) -> DefinitionRef | None:
    """The definition whose static labels the alert carries (the most of them); when none
    matches fully (labels were relabelled), the one sharing most labels."""
    def score(d: DefinitionRef) -> tuple[bool, int]:
        same = sum(1 for k, v in d.labels.items() if labels.get(k) == v)
        return (same == len(d.labels), same)

    return max(defs, key=score, default=None)


# -- the receiver ----------------------------------------------------------------------------

def _check_options(options: Mapping[str, Any]) -> None:
    closed_by = options.get("closed_by")
    if closed_by is not None and closed_by not in CLOSED_BY:
        raise IngestError(f"option closed_by: {closed_by!r} is not one of "
                          f"{', '.join(CLOSED_BY)}")


class AlertmanagerReceiver:
    """Turns notifications into records; keeps lookups cached between notifications.

    Besides the resolver's and the definitions' caches it remembers, per occurrence,
    whether it is closed and, per pod it put in by inference, the workload it came from:
    what it wrote itself needs no store read, so a repeated delivery costs none, and a
    retry arriving after the resolution in the same group commit still finds it closed.
    """

    def __init__(self, kg: Any, *, resolver: Resolver | None = None,
                 definitions: DefinitionIndex | None = None, cache_size: int = 100_000
                 ) -> None:
        self.kg = kg
        self.resolver = resolver or Resolver(kg)
        self.definitions = definitions or DefinitionIndex(kg)
        self.cache_size = cache_size
        self._closed: dict[str, bool] = {}  # occurrence IRI -> closed?
        self._pods: dict[str, Resolution | None] = {}  # pod IRI -> its inferred workload

    def forget(self) -> None:
        """Drop cached lookups (after topology or alert rules changed)."""
        self.resolver.forget()
        self.definitions.forget()
        self._closed.clear()
        self._pods.clear()

    def records(self, ctx: IngestContext, payload: Any, name: str) -> list[Record]:
        """The records of one notification; WebhookPayloadError if it is malformed."""
        out = self.records_many([(ctx, payload, name)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def records_many(self, notes: Sequence[tuple[IngestContext, Any, str]]
                     ) -> list[list[Record] | IngestError]:
        """The records of many notifications, in order (the receiver's group commit), with
        one store read for the lookups of them all (label resolutions, occurrences, pods):
        one notification after another, each cost ~2 reads, a third of the writer's time
        in a storm. Each notification's records, or the error that refused it (malformed:
        WebhookPayloadError; a bad option)."""
        parsed: list[tuple[IngestContext, str, Notification, str] | IngestError] = []
        items: list[tuple[str, Mapping[str, str]]] = []
        occ: list[str] = []
        for ctx, payload, name in notes:
            try:
                note = parse_payload(payload)
                if note.alerts:
                    _check_options(ctx.options)
            except IngestError as exc:
                parsed.append(exc)
                continue
            scope = ctx.scope_for(Input(name))
            parsed.append((ctx, scope, note, name))
            items.extend((scope, a.labels) for a in note.alerts)
            occ.extend(ctx.iri(scope, "Alert", a.key) for a in note.alerts)
        found = self.resolver.resolve_many(items) if items else []
        base = self.kg.settings.iri_base
        pods = [_pod_candidates(scope, labels, base) if r.how == "exact" and r.label == "pod"
                else None for (scope, labels), r in zip(items, found, strict=True)]
        if occ:
            self._learn(occ, pods)
        out: list[list[Record] | IngestError] = []
        at = 0
        for p in parsed:
            if isinstance(p, IngestError):
                out.append(p)
                continue
            ctx, scope, note, name = p
            n = len(note.alerts)
            out.append(self._note_records(ctx, scope, name, note, occ[at:at + n],
                                          found[at:at + n], pods[at:at + n]))
            at += n
        return out

    def _note_records(self, ctx: IngestContext, scope: str, name: str, note: Notification,
                      occ: Sequence[str], found: Sequence[Resolution],
                      pods: Sequence[tuple[str, list[str]] | None]) -> list[Record]:
        closed_by = ctx.options.get("closed_by")
        reopen = bool(ctx.options.get("reopen"))
        rules_scope = str(ctx.options.get("rules_scope") or scope)
        defs = self.definitions.lookup(
            rules_scope, sorted({a.labels["alertname"] for a in note.alerts
                                 if "alertname" in a.labels}))
        out = []
        for alert, iri, res, pod in zip(note.alerts, occ, found, pods, strict=True):
            if alert.status == "firing" and self._closed.get(iri) and not reopen:
                ctx.report.count("staleFiring")
                continue
            if closed_by and alert.status == "resolved" and self._closed.get(iri):
                ctx.report.count("alreadyClosed")  # its own resolved report came first
                continue
            if pod is not None:
                res = self._pods.get(pod[0]) or res
            out.append(self._record(ctx, scope, name, note, alert, iri, res, defs))
            self._remember(self._closed, iri, alert.status == "resolved")
        return out

    def _learn(self, occ: Sequence[str], pods: Sequence[tuple[str, list[str]] | None]
               ) -> None:
        """One store read for the occurrences and existing pods not yet known here."""
        todo = [i for i in occ if i not in self._closed]
        for pod in pods:
            if pod is not None and pod[0] not in self._pods:
                todo.extend((pod[0], *pod[1]))
        if not todo:
            return
        known, _ = self.kg.store.fetch(list(dict.fromkeys(todo)), [])
        for iri in occ:
            if iri not in self._closed:
                st = known.get(iri)
                self._remember(self._closed, iri, st is not None and st.valid_to is not None)
        for pod in pods:
            if pod is not None and pod[0] not in self._pods:
                self._remember(self._pods, pod[0], _inferred_workload(pod, known))

    def _remember(self, cache: dict[str, Any], key: str, value: Any) -> None:
        cache.pop(key, None)
        cache[key] = value
        if len(cache) > self.cache_size:  # drop the oldest entry
            del cache[next(iter(cache))]

    def _record(self, ctx: IngestContext, scope: str, name: str, note: Notification,
                alert: WebhookAlert, iri: str, res: Resolution,
                defs: Mapping[str, Sequence[DefinitionRef]]) -> Record:
        source = f"alerts/{FORMAT}:{scope}"
        resolved = alert.status == "resolved"
        ann = alert.annotations
        url = ann.get("runbook_url")
        attrs = {k: v for k, v in ann.items() if k not in _NAMED_ANNOTATIONS}
        attrs.update(generatorURL=alert.generator_url, receiver=note.receiver,
                     externalURL=note.external_url)
        entity = Entity(iri, "Alert", {
            "name": alert.labels.get("alertname"), "fingerprint": alert.fingerprint,
            "alertStatus": alert.status, "startTime": alert.starts_at,
            "endTime": alert.ends_at if resolved else None, "groupKey": note.group_key,
            "closedBy": ctx.options.get("closed_by") if resolved else None,
            "severity": alert.labels.get("severity"), "summary": ann.get("summary"),
            "description": ann.get("description"),
            "runbookUrl": url if url and url.startswith(("http://", "https://")) else None,
            "labels": json.dumps(dict(alert.labels), sort_keys=True),
            "attributes": json.dumps(attrs, sort_keys=True), "ingestScope": scope,
        }, source, alert.starts_at, alert.ends_at if resolved else None)
        rec = Record(name, f"/alerts/{alert.index}", [entity], [],
                     json.dumps({"labels": alert.labels, "fingerprint": alert.fingerprint}))
        self._link_definition(ctx, rec, alert, defs, source)
        self._link_subject(ctx, rec, alert, res, scope)
        return rec

    @staticmethod
    def _link_definition(ctx: IngestContext, rec: Record, alert: WebhookAlert,
                         defs: Mapping[str, Sequence[DefinitionRef]], source: str) -> None:
        best = best_definition(defs.get(alert.labels.get("alertname", ""), ()), alert.labels)
        if best is None:
            ctx.report.count("definitionMissing")
            return
        rec.relations.append(Relation("instanceOf", rec.entities[0].iri, best.iri, {},
                                      source, alert.starts_at))

    def _link_subject(self, ctx: IngestContext, rec: Record, alert: WebhookAlert,
                      res: Resolution, scope: str) -> None:
        me, source = rec.entities[0].iri, f"alerts/{FORMAT}:{scope}"
        if res.iri is None:
            ctx.report.count("unresolved")
            if ctx.report.counts["unresolved"] <= MAX_NOTES:
                ctx.report.notes.append(
                    f"unresolved: alert {alert.labels.get('alertname', '?')} "
                    f"(fingerprint {alert.fingerprint}) labels "
                    f"{json.dumps(dict(alert.labels), sort_keys=True)}")
            return
        target = res.iri
        if res.how == "inferred" and res.label == "pod":
            target = _inferred_pod(ctx, rec, alert, res, scope)
            self._remember(self._pods, target, res)
        rec.relations.append(Relation("aboutEntity", me, target, {"resolution": res.how},
                                      source, alert.starts_at))
        ctx.report.count(f"resolved{res.how.capitalize()}")


def _pod_candidates(scope: str, labels: Mapping[str, str], base: str
                    ) -> tuple[str, list[str]] | None:
    """The IRI of the pod the labels name and of the workloads its name may belong to."""
    if "pod" not in labels:
        return None
    cands = [c for c in candidates(scope, labels, base) if c.label == "pod"]
    return cands[0].iri, [c.iri for c in cands[1:] if c.how == "inferred"]


def _inferred_workload(pod: tuple[str, list[str]], known: Mapping[str, FactState]
                       ) -> Resolution | None:
    """For a pod this source put in by inference: the workload it was inferred from (so it
    stays inferred until topology ingest knows the pod itself); None for other pods."""
    state = known.get(pod[0])
    if state is None or not (state.source or "").startswith(f"alerts/{FORMAT}:"):
        return None
    for workload in pod[1]:
        st = known.get(workload)
        if st is not None and st.valid_to is None:
            return Resolution(workload, st.kind, "inferred", "pod")
    return None


def _inferred_pod(ctx: IngestContext, rec: Record, alert: WebhookAlert, res: Resolution,
                  scope: str) -> str:
    """Put in the pod the alert names, managed by the workload its name points to."""
    labels = alert.labels
    source = f"alerts/{FORMAT}:{scope}"
    ns = labels.get("namespace") or "default"
    pod_scope = labels.get("cluster") or scope
    pod = ctx.iri(pod_scope, "Pod", f"{ns}/{labels['pod']}")
    rec.entities.append(Entity(pod, "Pod", {"name": labels["pod"], "namespaceName": ns,
                                            "ingestScope": pod_scope}, source))
    rec.relations.append(Relation("manages", str(res.iri), pod, {"resolution": "inferred"},
                                  source))
    return pod


# -- entry points ----------------------------------------------------------------------------

def alertmanager_records(ctx: IngestContext, payload: dict[str, Any], name: str, *,
                         receiver: AlertmanagerReceiver | None = None) -> list[Record]:
    """The records of one webhook notification (nothing written); WebhookPayloadError
    naming the first bad field's JSON pointer when it is not a v4 payload."""
    return (receiver or AlertmanagerReceiver(ctx.kg)).records(ctx, payload, name)


def ingest_webhook(ctx: IngestContext, payload: dict[str, Any], name: str, *,
                   receiver: AlertmanagerReceiver | None = None) -> list[Record]:
    """Validate one notification and write its records through ``ctx.sink`` (flushed, so
    durable on return). Raises WebhookPayloadError before writing anything."""
    records = alertmanager_records(ctx, payload, name, receiver=receiver)
    for rec in records:
        ctx.sink.add(rec)
    ctx.sink.flush()
    ctx.report.count("alerts", len(records))
    return records
