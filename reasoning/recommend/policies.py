"""Remediation policies as data: the YAML format, its validation, and its facts.

A policy file (format version 1, spec in docs/recommend.md; examples under
``ontology/policies/``) declares **action types** (what an executor can do) and
**policies** in event / condition / action form:

- ``event``: the alert names (AlertDefinitions) and entity types the policy is for;
- ``condition``: label matchers the alert must satisfy (``value`` exact, ``~regex``);
- ``action``: the runbook it follows and its steps, each an action type with parameters
  (``$labels.<name>`` is filled from the alert) and the runbook step it carries out;
- ``preconditions``: guards (frequency, blastRadius, allowList, denyList, timeWindow);
- ``postconditions``: what must hold afterwards (a PromQL expression compared with a
  target value, for a time);
- ``autonomyLevel`` (L0–L5) and ``enabled``.

Facts (source ``policies/yaml:{scope}``): ``ActionType`` keyed by its id;
``RemediationPolicy`` keyed by its id (``selector`` = the label conditions,
``mentionedTypes`` = the entity types, ``attributes`` = the alert names) ``-appliesTo->``
the live AlertDefinitions of those names and ``-guardedBy->`` its ``Guard`` s; its action
plan, an ``OperationPlan`` keyed ``policy/{id}`` that the policy ``usesPlan``, which
``derivedFrom`` the runbook's plan, ``hasStep`` its ``PlanStep`` s (``stepAction`` the action
type, ``derivedFrom`` the runbook step) and ``hasPostCondition`` its ``PostCondition`` s.
Loading is a snapshot of the source: policies (and their parts) that a newer load of the
same scope no longer has are retired.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kg.errors import AutoCNCError
from kg.facts import Entity, FactBatch, Relation, now_utc
from ontology import mint_iri

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

FORMAT_VERSION = 1
SOURCE_KIND = "policies/yaml"
POLICY_DIR = Path(__file__).resolve().parents[2] / "ontology" / "policies"
_PARAM = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")


class PolicyError(AutoCNCError):
    """A policy file is invalid; ``problems`` lists ``(file, pointer, reason)``."""

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"{f}: {p or '/'}: {r}" for f, p, r in self.problems[:20]]
        super().__init__("invalid policy file(s):\n  " + "\n  ".join(lines))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ActionTypeSpec(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str
    description: str | None = None
    executor: Literal["dry-run", "webhook", "kubernetes"] = "dry-run"
    reversible: bool = False
    command: str | None = None
    parameters: list[str] = Field(default_factory=list)


class EventSpec(_Model):
    alerts: list[str] = Field(default_factory=list)
    entity_types: list[str] = Field(default_factory=list, alias="entityTypes")


class ConditionSpec(_Model):
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _regexes(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if value.startswith("~"):
                try:
                    re.compile(value[1:])
                except re.error as exc:
                    raise ValueError(f"label {key}: bad regular expression: {exc}") from exc
        return v


class StepSpec(_Model):
    action: str
    runbook_step: int | None = Field(None, ge=1, alias="runbookStep")
    description: str | None = None
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)


class ActionSpec(_Model):
    runbook: str | None = None
    steps: list[StepSpec] = Field(min_length=1)


class GuardSpec(_Model):
    type: Literal["frequency", "blastRadius", "allowList", "denyList", "timeWindow"]
    max_executions: int | None = Field(None, ge=0, alias="maxExecutions")
    window_seconds: float | None = Field(None, ge=0, alias="windowSeconds")
    max_blast_radius: int | None = Field(None, ge=0, alias="maxBlastRadius")
    target_pattern: str | None = Field(None, alias="targetPattern")
    time_window: str | None = Field(None, alias="timeWindow")

    @field_validator("target_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regular expression: {exc}") from exc
        return v


class PostConditionSpec(_Model):
    name: str
    expression: str
    comparator: Literal["<", "<=", "==", "!=", ">=", ">"] = "=="
    target_value: float = Field(alias="targetValue")
    for_seconds: float = Field(0.0, ge=0, alias="forSeconds")
    description: str | None = None


class PolicySpec(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str
    description: str
    event: EventSpec
    condition: ConditionSpec = Field(default_factory=ConditionSpec)
    action: ActionSpec
    preconditions: list[GuardSpec] = Field(default_factory=list)
    postconditions: list[PostConditionSpec] = Field(default_factory=list)
    autonomy_level: Literal["L0", "L1", "L2", "L3", "L4", "L5"] = Field(
        "L1", alias="autonomyLevel")
    enabled: bool = True


class PolicyFile(_Model):
    format_version: Literal[1] = Field(alias="formatVersion")
    action_types: list[ActionTypeSpec] = Field(default_factory=list, alias="actionTypes")
    policies: list[PolicySpec] = Field(default_factory=list)


@dataclass
class PolicyReport:
    files: list[str] = field(default_factory=list)
    policies: int = 0
    action_types: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- reading ---------------------------------------------------------------------------------

def read_policy_file(name: str, text: str) -> PolicyFile:
    """Parse and validate one file; PolicyError names each bad field by JSON pointer."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise PolicyError([(name, where, f"not valid YAML: {exc}")]) from exc
    if not isinstance(doc, dict):
        raise PolicyError([(name, "", "a policy file is a mapping with formatVersion, "
                            "actionTypes and policies")])
    try:
        return PolicyFile.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError([(name, "/" + "/".join(str(p) for p in e["loc"]), e["msg"])
                           for e in exc.errors()]) from exc


def read_policies(paths: Sequence[str | Path]) -> list[tuple[str, PolicyFile]]:
    """Every ``*.yaml`` / ``*.yml`` file named (directories recursively), validated, with
    cross-references checked (action ids, duplicate ids) across all of them."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for pat in ("*.yaml", "*.yml") for f in p.rglob(pat))
        elif p.is_file():
            files.append(p)
        else:
            raise PolicyError([(str(p), "", "no such file or directory")])
    return parse_documents([(str(f), f.read_text(encoding="utf-8")) for f in files])


def parse_documents(docs: Sequence[tuple[str, str]]) -> list[tuple[str, PolicyFile]]:
    """Validate ``(name, YAML text)`` documents together; PolicyError lists every problem."""
    parsed: list[tuple[str, PolicyFile]] = []
    problems: list[tuple[str, str, str]] = []
    for name, text in docs:
        try:
            parsed.append((name, read_policy_file(name, text)))
        except PolicyError as exc:
            problems += exc.problems
    problems += _cross_check(parsed)
    if problems:
        raise PolicyError(problems)
    return parsed


def _cross_check(parsed: Sequence[tuple[str, PolicyFile]]) -> list[tuple[str, str, str]]:
    actions = {a.id for _, pf in parsed for a in pf.action_types}
    problems = []
    seen: dict[str, str] = {}
    for name, pf in parsed:
        for i, pol in enumerate(pf.policies):
            if pol.id in seen:
                problems.append((name, f"/policies/{i}/id",
                                 f"policy id {pol.id!r} also in {seen[pol.id]}"))
            seen[pol.id] = name
            for j, step in enumerate(pol.action.steps):
                if step.action not in actions:
                    problems.append((name, f"/policies/{i}/action/steps/{j}/action",
                                     f"unknown action type {step.action!r}; declare it "
                                     "under actionTypes"))
    return problems


# -- facts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyScopes:
    scope: str = "default"  # of the policies and action types
    runbooks: str | None = None  # scope of the runbook plans (default: scope)
    alerts: str | None = None  # scope of the alert definitions (default: any)


def policy_facts(kg: KnowledgeGraph, parsed: Sequence[tuple[str, PolicyFile]],
                 scopes: PolicyScopes) -> FactBatch:
    """The facts of the parsed files (links only to plans and definitions that exist)."""
    base = kg.settings.iri_base
    source = f"{SOURCE_KIND}:{scopes.scope}"

    def iri(kind: str, key: str) -> str:
        return mint_iri(scopes.scope, kind, key, base)

    ents: list[Entity] = []
    rels: list[Relation] = []
    for _, pf in parsed:
        for a in pf.action_types:
            ents.append(Entity(iri("ActionType", a.id), "ActionType", {
                "name": a.name, "description": a.description, "executor": a.executor,
                "reversible": a.reversible, "command": a.command,
                "parameters": json.dumps(a.parameters), "ingestScope": scopes.scope}, source))
    policies = [p for _, pf in parsed for p in pf.policies]
    definitions = _definitions(kg, sorted({n for p in policies for n in p.event.alerts}),
                               scopes.alerts)
    rb_scope = scopes.runbooks or scopes.scope
    plans = _runbook_plans(kg, rb_scope, sorted({p.action.runbook for p in policies
                                                  if p.action.runbook}))

    def runbook_iri(kind: str, key: str) -> str | None:
        """The runbook named ``key`` (its first by path when several are for one alert), or
        its step ``name/n``."""
        name, _, step = key.rpartition("/") if kind == "PlanStep" else (key, "", "")
        plan = plans.get(name)
        if plan is None:
            return None
        return plan[0] if kind == "OperationPlan" else plan[1].get(int(step))

    for pol in policies:
        _policy(pol, iri, runbook_iri, source, ents, rels, definitions, scopes)
    return FactBatch.of(source, ents, rels)


def _runbook_plans(kg: KnowledgeGraph, scope: str, names: Sequence[str]
                   ) -> dict[str, tuple[str, dict[int, str]]]:
    """Runbook name -> (plan IRI, step order -> step IRI) of the live runbook plans of those
    names (runbooks are keyed by path; the first by IRI wins when several share a name)."""
    if not names:
        return {}
    rows = kg.cypher(
        "MATCH (p:Entity) WHERE 'OperationPlan' IN p.types AND p.ingestScope = $scope AND "
        "p.name IN $names AND p.validTo IS NULL AND p.source = $source "
        "RETURN p.iri, p.name ORDER BY p.iri",
        {"scope": scope, "names": list(names), "source": f"runbooks/markdown:{scope}"}).rows
    out: dict[str, tuple[str, dict[int, str]]] = {}
    for iri, name in rows:
        out.setdefault(name, (iri, {}))
    chosen = {iri: steps for iri, steps in out.values()}
    for plan, step, order in kg.cypher(
            "MATCH (p:Entity)-[:hasStep]->(s:Entity) WHERE p.iri IN $plans AND "
            "s.validTo IS NULL RETURN p.iri, s.iri, s.stepOrder",
            {"plans": sorted(chosen)}).rows:
        if order is not None:
            chosen[plan][int(order)] = step
    return out


def _policy(pol: PolicySpec, iri: Any, runbook_iri: Any, source: str, ents: list[Entity],
            rels: list[Relation], definitions: Mapping[str, list[str]],
            scopes: PolicyScopes) -> None:
    runbook = runbook_iri("OperationPlan", pol.action.runbook) if pol.action.runbook else None
    p_iri = iri("RemediationPolicy", pol.id)
    plan = iri("OperationPlan", f"policy/{pol.id}")
    ents.append(Entity(p_iri, "RemediationPolicy", {
        "name": pol.name, "description": pol.description, "autonomyLevel": pol.autonomy_level,
        "enabled": pol.enabled, "ingestScope": scopes.scope,
        "selector": ",".join(f"{k}={v}" for k, v in sorted(pol.condition.labels.items()))
        or None,
        "mentionedTypes": ",".join(sorted(pol.event.entity_types)) or None,
        "attributes": json.dumps({"alerts": pol.event.alerts, "runbook": pol.action.runbook},
                                 sort_keys=True)}, source))
    ents.append(Entity(plan, "OperationPlan", {
        "name": pol.name, "description": f"Action plan of policy {pol.id}",
        "method": "policy", "ingestScope": scopes.scope}, source))
    rels.append(Relation("usesPlan", p_iri, plan, {}, source))
    if runbook:
        rels.append(Relation("derivedFrom", plan, runbook, {}, source))
    for name in pol.event.alerts:
        rels += [Relation("appliesTo", p_iri, d, {}, source) for d in definitions.get(name, [])]
    prev = None
    for n, step in enumerate(pol.action.steps, 1):
        s_iri = iri("PlanStep", f"policy/{pol.id}/{n}")
        ents.append(Entity(s_iri, "PlanStep", {
            "stepOrder": n, "name": step.action, "description": step.description,
            "parameters": json.dumps(step.parameters, sort_keys=True)}, source))
        rels += [Relation("hasStep", plan, s_iri, {}, source),
                 Relation("stepAction", s_iri, iri("ActionType", step.action), {}, source)]
        if prev:
            rels.append(Relation("nextStep", prev, s_iri, {}, source))
        if runbook and step.runbook_step and (rb_step := runbook_iri(
                "PlanStep", f"{pol.action.runbook}/{step.runbook_step}")):
            rels.append(Relation("derivedFrom", s_iri, rb_step, {}, source))
        prev = s_iri
    for n, g in enumerate(pol.preconditions, 1):
        g_iri = iri("Guard", f"{pol.id}/guard/{n}")
        ents.append(Entity(g_iri, "Guard", {
            "guardType": g.type, "maxExecutions": g.max_executions,
            "windowSeconds": g.window_seconds, "maxBlastRadius": g.max_blast_radius,
            "targetPattern": g.target_pattern, "timeWindow": g.time_window,
            "enabled": True}, source))
        rels.append(Relation("guardedBy", p_iri, g_iri, {}, source))
    for n, pc in enumerate(pol.postconditions, 1):
        c_iri = iri("PostCondition", f"{pol.id}/post/{n}")
        ents.append(Entity(c_iri, "PostCondition", {
            "name": pc.name, "expression": pc.expression, "comparator": pc.comparator,
            "targetValue": pc.target_value, "forSeconds": pc.for_seconds,
            "description": pc.description}, source))
        rels.append(Relation("hasPostCondition", plan, c_iri, {}, source))


def _definitions(kg: KnowledgeGraph, names: Sequence[str], scope: str | None
                 ) -> dict[str, list[str]]:
    if not names:
        return {}
    where = " AND d.ingestScope = $scope" if scope else ""
    rows = kg.cypher("MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND d.name IN $names "
                     f"AND d.validTo IS NULL{where} RETURN d.name, d.iri",
                     {"names": list(names), "scope": scope}).rows
    out: dict[str, list[str]] = {}
    for name, d in sorted(rows):
        out.setdefault(name, []).append(d)
    return out


def load_policies(kg: KnowledgeGraph, paths: Sequence[str | Path] | None = None, *,
                  scopes: PolicyScopes | None = None) -> PolicyReport:
    """Validate the policy files (default: ``ontology/policies``) and write their facts;
    what an earlier load of the same scope had and this one lacks is retired."""
    return apply_policies(kg, read_policies(paths or [POLICY_DIR]), scopes or PolicyScopes())


def apply_policies(kg: KnowledgeGraph, parsed: Sequence[tuple[str, PolicyFile]],
                   scopes: PolicyScopes) -> PolicyReport:
    """Write validated policy files as the complete policy set of ``scopes.scope``."""
    batch = policy_facts(kg, parsed, scopes)
    report = PolicyReport(files=[n for n, _ in parsed],
                          policies=sum(len(pf.policies) for _, pf in parsed),
                          action_types=sum(len(pf.action_types) for _, pf in parsed))
    summary = kg.write(batch)
    report.created = summary.created + summary.relations_created
    report.updated = summary.updated + summary.relations_updated
    report.unchanged = summary.unchanged + summary.relations_unchanged
    report.retired = _retire_missing(kg, batch)
    linked = {r.start for r in batch.relations if r.type == "appliesTo"}
    unlinked = [p for _, pf in parsed for p in pf.policies if p.event.alerts and
                mint_iri(scopes.scope, "RemediationPolicy", p.id, kg.settings.iri_base)
                not in linked]
    if unlinked:
        report.notes.append(
            f"{len(unlinked)} policies name alerts without a definition in the graph yet "
            f"({', '.join(p.id for p in unlinked[:5])}); they still match by alert name; "
            "load them again after `autocnc ingest alerts` to link them")
    return report


def _retire_missing(kg: KnowledgeGraph, batch: FactBatch) -> int:
    ents, rels = kg.store.live(batch.source)
    keep = {e.iri for e in batch.entities}
    keep_rels = {r.key for r in batch.relations}
    now = now_utc()
    gone = [Entity(i, k, {}, batch.source, valid_to=now) for i, k in ents.items()
            if i not in keep]
    gone_rels = [Relation(t, s, e, {}, batch.source, valid_to=now) for t, s, e in rels
                 if (t, s, e) not in keep_rels]
    if gone or gone_rels:
        kg.write(FactBatch.of(batch.source, gone, gone_rels))
    return len(gone) + len(gone_rels)


def fill_parameters(parameters: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """Step parameters with ``$labels.<name>`` replaced from an alert's labels (left as is
    when the alert lacks the label, so the executor can refuse)."""
    def one(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        return _PARAM.sub(lambda m: labels.get(m.group(1), m.group(0)), v)

    return {k: one(v) for k, v in parameters.items()}
