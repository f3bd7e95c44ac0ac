"""The ``alerts`` source: Prometheus alerting rules and Alertmanager notifications.

Two formats (docs/ingest/alerts.md), told apart by content unless ``format`` is given:

- ``rules``: Prometheus rule files, PrometheusRule resources, rule files in a ConfigMap →
  AlertDefinitions (:mod:`ingest.alert_rules`);
- ``alertmanager``: Alertmanager webhook payloads, version 4 (a JSON object with
  ``version`` and ``alerts``) → Alert occurrences (:mod:`ingest.alertmanager`);
- ``events``: alarm / event logs as CSV (``time,event_type,entity``) → Alarm occurrences
  (:mod:`ingest.alarm_events`).

Rule files of a run are written first, so notifications of the same run find their
definitions. Options: ``format`` (rules | alertmanager), ``runbooks_scope`` (where the
runbooks to link live; default the scope), ``rules_scope`` (where notifications look up
their definitions; default the scope).

The HTTP receiver calls :func:`ingest_webhook` (or :func:`alertmanager_records`) with the
parsed body; it raises :class:`WebhookPayloadError` naming the JSON pointer of the first
bad field, and writes nothing then.
"""

from __future__ import annotations

import json

from ingest.alarm_events import ingest_events, looks_like_events
from ingest.alert_rules import RuleRun, parse_duration
from ingest.alertmanager import (
    AlertmanagerReceiver,
    WebhookPayloadError,
    alertmanager_records,
    ingest_webhook,
)
from ingest.base import IngestContext, IngestError, Input

PATTERNS = ("*.yml", "*.yaml", "*.rules", "*.json", "*.csv")
FORMATS = ("rules", "alertmanager", "events")

__all__ = ["FORMATS", "PATTERNS", "AlertmanagerReceiver", "WebhookPayloadError",
           "alertmanager_records", "ingest", "ingest_webhook", "parse_duration"]


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    fmt = ctx.options.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise IngestError(f"alerts: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    ctx.progress.start(len(inputs), "alerts")
    rules = RuleRun(ctx)
    notifications: list[tuple[Input, str]] = []
    events: list[tuple[Input, str]] = []
    for inp in inputs:
        text = inp.read_text()
        if fmt == "events" or (fmt is None and looks_like_events(ctx, inp, text)):
            events.append((inp, text))
        elif fmt is None and inp.name.lower().endswith(".csv"):
            ctx.sink.skip(inp.name, "a CSV without an event_type column is not an alarm log")
        elif fmt == "alertmanager" or (fmt is None and _looks_like_webhook(text)):
            notifications.append((inp, text))
        else:
            rules.read(inp, text)
            ctx.progress.advance()
    rules.finish()
    for inp, text in events:
        ingest_events(ctx, inp, text)
    if notifications:
        ctx.sink.flush()  # definitions first: the notifications look them up in the store
        receiver = AlertmanagerReceiver(ctx.kg)
        for inp, text in notifications:
            _ingest_notification(ctx, receiver, inp, text)
            ctx.progress.advance()


def _looks_like_webhook(text: str) -> bool:
    head = text.lstrip()[:1]
    if head != "{":
        return False
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and "alerts" in doc and "groups" not in doc


def _ingest_notification(ctx: IngestContext, receiver: AlertmanagerReceiver, inp: Input,
                         text: str) -> None:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        ctx.sink.reject(inp.name, "/", f"not JSON: {exc}", text[:500])
        return
    try:
        records = receiver.records(ctx, payload, inp.name)
    except WebhookPayloadError as exc:
        ctx.sink.reject(inp.name, exc.pointer or "/", exc.reason, text[:500])
        return
    for rec in records:
        ctx.sink.add(rec)
    ctx.sink.flush()  # the next notification's lifecycle checks read this one's state
    ctx.report.count("alerts", len(records))
