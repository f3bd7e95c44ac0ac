"""Prometheus alerting-rule files → ``AlertDefinition`` facts.

Accepted layouts (YAML, one or several documents per file; JSON is YAML too):

- a plain rule file: ``{groups: [{name, rules: [...]}]}`` (Prometheus 2.x and later);
- a ``PrometheusRule`` custom resource (prometheus-operator): the same under ``spec``;
- a ``ConfigMap`` whose ``data`` values hold rule files (Sock Shop's ``alert.rules``).

Each alerting rule (``alert``, ``expr``, optional ``for``, ``labels``, ``annotations``)
becomes one AlertDefinition; recording rules (``record``) are skipped and counted. Inputs
that are not rule files — Alertmanager configurations (also inside a Secret or ConfigMap),
the awesome-prometheus-alerts catalogue (groups of ``services`` instead of ``rules``),
Prometheus 1.x rule text — are reported as skipped with the reason.

Keys. Operators look alerts up by name, so the natural key is the alert name within the
scope. Several rules may share a name (kube-prometheus alerts at warning and critical
level, or KubeAPIErrorBudgetBurn at four burn-rate windows); all rules of one ingest run
that share a name are keyed ``name/severity`` when their severities differ, and
``name/severity/k=v,...`` with the static labels that still tell them apart, so every
variant keeps its own expression. A key seen again in a later run updates that definition.

Runbooks: a definition is linked ``mitigates`` from the OperationPlans of the same name in
the runbooks' scope (option ``runbooks_scope``, default the rules' scope) when that plan
exists, so the link appears whichever of the two is ingested first.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation, Value

FORMAT = "rules"
RUNBOOK_SOURCE_FORMAT = "runbooks/markdown"  # source of `mitigates`, whoever writes it

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_PROM1_ALERT = re.compile(r"^\s*ALERT\s+[A-Za-z_:][\w:]*\s+IF\s", re.M)
_RULE_KEYS = frozenset({"alert", "record", "expr", "for", "keep_firing_for", "labels",
                        "annotations"})


def parse_duration(value: Any) -> float:
    """Seconds of a Prometheus duration (``15m``, ``1h30m``, ``500ms``, ``0``)."""
    text = str(value).strip()
    if text == "0":
        return 0.0
    m = _DURATION.match(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"{value!r} is not a Prometheus duration (e.g. 30s, 15m, 1h30m)")
    return float(sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS, strict=True) if g))


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule as read, before it gets its key."""

    file: str
    where: str
    group: str
    alert: str
    expr: str
    for_seconds: float
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    raw: str
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str | None:
        return self.labels.get("severity")


@dataclass
class RuleFile:
    """What one input held: rules, bad records (where, reason, raw) and recording rules."""

    rules: list[AlertRule] = field(default_factory=list)
    bad: list[tuple[str, str, str | None]] = field(default_factory=list)
    recording: int = 0
    skip_reason: str | None = None


# -- reading ---------------------------------------------------------------------------------

def read_rule_file(inp: Input, text: str) -> RuleFile:
    """Parse one input; a file that is not a rule file comes back with ``skip_reason``."""
    out = RuleFile()
    if _PROM1_ALERT.search(text):
        out.skip_reason = ("Prometheus 1.x rule syntax (ALERT ... IF ...); convert it with "
                           "`promtool update rules` and ingest the YAML")
        return out
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        out.bad.append((where, f"not valid YAML: {exc}", text[:500]))
        return out
    reasons: list[str] = []
    found = False
    for i, doc in enumerate(docs):
        prefix = f"document {i + 1} " if len(docs) > 1 else ""
        for path, groups in _rule_groups(doc, reasons):
            found = True
            _read_groups(inp.name, prefix, path, groups, out)
    if not found and not out.bad:
        out.skip_reason = reasons[0] if reasons else "no Prometheus rule groups in it"
    return out


def _rule_groups(doc: Any, reasons: list[str]
                 ) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """The ``groups`` lists of one YAML document, with their JSON-pointer path."""
    if not isinstance(doc, dict):
        reasons.append(f"a YAML {type(doc).__name__}, not a rule file")
        return
    kind = doc.get("kind")
    if kind == "PrometheusRule":
        spec = doc.get("spec")
        yield ("spec", "groups"), spec.get("groups") if isinstance(spec, dict) else None
    elif kind in ("ConfigMap", "Secret"):
        yield from _embedded_groups(doc, str(kind), reasons)
    elif isinstance(kind, str):
        reasons.append(f"a Kubernetes {kind}, not rule files")
    elif "groups" in doc:
        if _is_rule_groups(doc["groups"]):
            yield ("groups",), doc["groups"]
        else:
            reasons.append("its groups have no `rules` (the awesome-prometheus-alerts "
                           "catalogue format, not a Prometheus rule file); ingest its "
                           "dist-rules/ files instead")
    else:
        reasons.append(_config_reason(doc) or "no Prometheus rule groups in it")


def _embedded_groups(doc: dict[str, Any], kind: str, reasons: list[str]
                     ) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Rule files held as the string values of a ConfigMap's or Secret's data."""
    seen = False
    for field_name in ("data", "stringData"):
        data = doc.get(field_name)
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            try:
                inner = yaml.safe_load(value) if isinstance(value, str) else None
            except yaml.YAMLError:
                continue
            if isinstance(inner, dict) and _is_rule_groups(inner.get("groups")):
                seen = True
                yield (field_name, str(key), "groups"), inner["groups"]
            elif isinstance(inner, dict) and _config_reason(inner):
                reasons.append(f"a {kind} whose {key!r} is {_config_reason(inner)}")
    if not seen and not reasons:
        reasons.append(f"a {kind} without rule files in its data")


def _is_rule_groups(groups: Any) -> bool:
    return isinstance(groups, list) and any(isinstance(g, dict) and "rules" in g
                                            for g in groups)


def _config_reason(doc: Mapping[str, Any]) -> str | None:
    if "route" in doc or "receivers" in doc:
        return "an Alertmanager configuration (route/receivers), not rule files"
    return None


def _read_groups(file: str, prefix: str, path: tuple[str | int, ...], groups: Any,
                 out: RuleFile) -> None:
    if not isinstance(groups, list):
        out.bad.append((prefix + pointer(*path), "groups must be a list", None))
        return
    for gi, group in enumerate(groups):
        gpath: tuple[str | int, ...] = (*path, gi)
        if not isinstance(group, dict) or not isinstance(group.get("name"), str):
            out.bad.append((prefix + pointer(*gpath), "a rule group needs a name",
                            _dump(group)))
            continue
        rules = group.get("rules") or []  # `rules:` left empty is an empty group
        if not isinstance(rules, list):
            out.bad.append((prefix + pointer(*gpath, "rules"), "rules must be a list", None))
            continue
        for ri, raw in enumerate(rules):
            where = prefix + pointer(*gpath, "rules", ri)
            if isinstance(raw, dict) and "record" in raw and "alert" not in raw:
                out.recording += 1
                continue
            try:
                out.rules.append(_alert_rule(file, where, group["name"], raw))
            except ValueError as exc:
                out.bad.append((where, str(exc), _dump(raw)))


def _alert_rule(file: str, where: str, group: str, raw: Any) -> AlertRule:
    if not isinstance(raw, dict):
        raise ValueError("a rule must be a mapping")
    alert, expr = raw.get("alert"), raw.get("expr")
    if not isinstance(alert, str) or not alert.strip():
        raise ValueError("a rule needs `alert` (an alerting rule) or `record`")
    if isinstance(expr, bool) or not isinstance(expr, str | int | float) or not str(expr).strip():
        raise ValueError(f"alert {alert!r} needs a non-empty `expr`")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ValueError(f"alert {alert!r} has unknown field(s) {', '.join(unknown)}")
    extra = {}
    if raw.get("keep_firing_for") is not None:
        extra["keep_firing_for"] = str(raw["keep_firing_for"])
        parse_duration(raw["keep_firing_for"])
    return AlertRule(
        file=file, where=where, group=group, alert=alert.strip(), expr=str(expr).strip(),
        for_seconds=parse_duration(raw["for"]) if raw.get("for") is not None else 0.0,
        labels=_string_map(raw.get("labels"), alert, "labels"),
        annotations=_string_map(raw.get("annotations"), alert, "annotations"),
        raw=_dump(raw) or "", extra=extra)


def _string_map(value: Any, alert: str, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"alert {alert!r}: {name} must be a mapping")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list) or v is None:
            raise ValueError(f"alert {alert!r}: {name}.{k} must be a text value")
        out[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return out


def _dump(raw: Any) -> str | None:
    try:
        return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)[:4096]
    except yaml.YAMLError:
        return repr(raw)[:4096]


# -- keys ------------------------------------------------------------------------------------

def assign_keys(rules: Sequence[AlertRule]) -> tuple[list[str], int]:
    """The natural key of each rule (see the module doc) and how many exact duplicates
    (same name and static labels) had to be numbered."""
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, rule in enumerate(rules):
        by_name[rule.alert].append(i)
    keys = [rule.alert for rule in rules]
    for name, idx in by_name.items():
        if len(idx) > 1:
            for i in idx:
                keys[i] = _variant_key(name, rules[i], [rules[j] for j in idx])
    duplicates = 0
    counts: Counter[str] = Counter()
    for i, key in enumerate(keys):
        counts[key] += 1
        if counts[key] > 1:  # indistinguishable to Alertmanager too: keep both, numbered
            keys[i] = f"{key}/{counts[key]}"
            duplicates += 1
    return keys, duplicates


def _variant_key(name: str, rule: AlertRule, siblings: Sequence[AlertRule]) -> str:
    parts = [name]
    if len({s.severity for s in siblings}) > 1:
        parts.append(rule.severity or "none")
    same = [s for s in siblings if s.severity == rule.severity]
    names = sorted({k for s in same for k in s.labels} - {"severity"})
    telling = [k for k in names if len({s.labels.get(k) for s in same}) > 1]
    if telling:
        parts.append(",".join(f"{k}={rule.labels.get(k, '')}" for k in telling))
    return "/".join(parts)


# -- facts -----------------------------------------------------------------------------------

@dataclass
class RuleRun:
    """The alerting rules of one ingest run; keyed and written together in ``finish``."""

    ctx: IngestContext
    pending: list[tuple[str, datetime | None, AlertRule]] = field(default_factory=list)

    def read(self, inp: Input, text: str) -> None:
        ctx = self.ctx
        parsed = read_rule_file(inp, text)
        if parsed.skip_reason:
            ctx.sink.skip(inp.name, parsed.skip_reason)
            return
        for where, reason, raw in parsed.bad:
            ctx.sink.reject(inp.name, where, reason, raw)
        if parsed.recording:
            ctx.report.count("recordingRules", parsed.recording)
        scope = ctx.scope_for(inp)
        at = ctx.as_of or inp.mtime()
        self.pending.extend((scope, at, rule) for rule in parsed.rules)

    def finish(self) -> None:
        """Key the rules per scope, link runbooks, and hand the records to the sink."""
        ctx = self.ctx
        by_scope: dict[str, list[tuple[datetime | None, AlertRule]]] = defaultdict(list)
        for scope, at, rule in self.pending:
            by_scope[scope].append((at, rule))
        for scope, items in by_scope.items():
            keys, duplicates = assign_keys([rule for _, rule in items])
            if duplicates:
                ctx.report.count("duplicateRules", duplicates)
            records = [definition_record(ctx, scope, key, rule, at)
                       for key, (at, rule) in zip(keys, items, strict=True)]
            link_runbooks(ctx, scope, records)
            for rec in records:
                ctx.sink.add(rec)
            ctx.report.count("alertDefinitions", len(records))
        self.pending.clear()


def definition_record(ctx: IngestContext, scope: str, key: str, rule: AlertRule,
                      at: datetime | None) -> Record:
    ann = dict(rule.annotations)
    url = ann.pop("runbook_url", None)
    attributes: dict[str, str] = {"group": rule.group, **rule.extra}
    if url is not None and not url.startswith(("http://", "https://")):
        attributes["runbook_url"] = url  # a relative link is kept, but is no runbookUrl
        url = None
    props: dict[str, Value] = {
        "name": rule.alert, "expression": rule.expr, "forSeconds": rule.for_seconds,
        "severity": rule.severity, "summary": ann.pop("summary", None),
        "description": ann.pop("description", None) or ann.pop("message", None),
        "runbookUrl": url,
        "labels": json.dumps(dict(rule.labels), sort_keys=True) if rule.labels else None,
        "attributes": json.dumps({**attributes, **ann}, sort_keys=True),
        "ingestScope": scope,
    }
    entity = Entity(ctx.iri(scope, "AlertDefinition", key), "AlertDefinition", props,
                    f"alerts/{FORMAT}:{scope}", valid_from=at)
    return Record(rule.file, rule.where, [entity], [], rule.raw)


def link_runbooks(ctx: IngestContext, scope: str, records: Sequence[Record]) -> None:
    """Add ``plan -mitigates-> definition`` for every live runbook named like it (runbooks
    are keyed by their path, so several may be for one alert)."""
    rb_scope = str(ctx.options.get("runbooks_scope") or scope)
    names = sorted({str(rec.entities[0].properties["name"]) for rec in records})
    plans: dict[str, list[str]] = defaultdict(list)
    for iri, name in ctx.kg.cypher(
            "MATCH (p:Entity) WHERE 'OperationPlan' IN p.types AND p.ingestScope = $scope "
            "AND p.name IN $names AND p.validTo IS NULL AND p.source = $source "
            "RETURN p.iri, p.name ORDER BY p.iri",
            {"scope": rb_scope, "names": names,
             "source": f"{RUNBOOK_SOURCE_FORMAT}:{rb_scope}"}).rows:
        plans[name].append(iri)
    linked = 0
    for rec in records:
        for plan in plans.get(str(rec.entities[0].properties["name"]), []):
            rec.relations.append(Relation("mitigates", plan, rec.entities[0].iri, {},
                                          f"{RUNBOOK_SOURCE_FORMAT}:{rb_scope}"))
            linked += 1
    if linked:
        ctx.report.count("runbooksLinked", linked)
