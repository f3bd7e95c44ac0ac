"""The ``runbooks`` source: Markdown runbooks → OperationPlans with ordered PlanSteps.

Format: any Markdown file with text (:mod:`ingest.runbook_markdown`; spec in
docs/ingest/runbooks.md). Each runbook becomes:

- an ``OperationPlan`` keyed by its path (:func:`runbook_keys`: parent folder and file
  stem, ``kubernetes/KubePodCrashLooping``), so two files never overwrite each other:
  ``name`` (the alert it is for), ``description`` (the Meaning section, else the first),
  ``impactText``, ``diagnosisText``, ``mitigationText`` (the sections' Markdown), other
  sections, the title (level-1 heading) and the path in ``attributes``, ``mentionedTypes``
  (ontology classes its text mentions, by :data:`VOCABULARY`), ``runbookUrl`` (option
  ``url_template``), ``embeddingModel`` when its vector is stored;
- ``PlanStep`` s keyed ``{key}/{n}`` with ``stepOrder`` n, ``description``, ``command``,
  linked ``plan -hasStep-> step`` and ``step -nextStep-> step+1``; steps a newer version
  of the runbook no longer has are retired;
- ``plan -mitigates-> AlertDefinition`` for every live definition named like the runbook
  in the rules' scope (option ``alerts_scope``, default the scope). Rules ingested later
  link themselves (:mod:`ingest.alert_rules`).

A file without text (only front matter, as a section's ``_index.md``) is skipped, and so is
a second input of the same file; each skip says why. Text vectors
(:mod:`ingest.text_vectors`) go to ``<data dir>/vectors/runbooks.npz``, one batch per run,
only for texts that changed. Without the [ml] extra the runbooks are ingested without
vectors and the report notes say so. Options: ``alerts_scope``, ``url_template`` (e.g.
``https://runbooks.prometheus-operator.dev/runbooks/{dir}/{lower}`` with ``{dir}`` the parent
folder, ``{stem}`` the file stem, ``{lower}`` it lower-cased, ``{name}`` the alert name),
``embed`` (default true).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ingest.base import IngestContext, Input, Record
from ingest.runbook_markdown import NotARunbook, Runbook, parse_runbook, plain_text
from kg.facts import Entity, FactBatch, Relation, now_utc

PATTERNS = ("*.md",)
FORMAT = "markdown"
VECTOR_FILE = "runbooks.npz"
NAMED_SECTIONS = {"meaning": "description", "impact": "impactText",
                  "diagnosis": "diagnosisText", "mitigation": "mitigationText"}

# Words of runbook prose → the ontology class they name (singular and plural, whole words;
# case-insensitive). Words with no class (volume, disk, job) are left out on purpose, and
# so are words that are mostly verbs in runbooks ("switch").
VOCABULARY: tuple[tuple[str, str], ...] = (
    (r"pods?", "Pod"), (r"containers?", "Container"), (r"deployments?", "Deployment"),
    (r"stateful ?sets?", "StatefulSet"), (r"daemon ?sets?", "DaemonSet"),
    (r"namespaces?", "Namespace"), (r"nodes?|kubelets?", "KubernetesNode"),
    (r"clusters?", "KubernetesCluster"), (r"services?", "Service"),
    (r"ingress(?:es)?", "Ingress"), (r"endpoints?", "Endpoint"), (r"gpus?", "GPU"),
    (r"npus?", "NPU"), (r"routers?", "Router"), (r"network switch(?:es)?", "Switch"),
    (r"network interfaces?|nics?", "NetworkInterface"), (r"network links?", "NetworkLink"),
)
_VOCAB = re.compile("|".join(f"(?P<t{i}>\\b(?:{p})\\b)" for i, (p, _) in enumerate(VOCABULARY)),
                    re.I)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class Parsed:
    inp: Input
    key: str  # the plan's natural key: its path (see runbook_keys)
    scope: str
    at: datetime | None
    book: Runbook

    @property
    def source(self) -> str:
        return f"runbooks/{FORMAT}:{self.scope}"


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    ctx.progress.start(len(inputs), "runbooks")
    parsed: list[Parsed] = []
    for inp, key in zip(inputs, runbook_keys(inputs), strict=True):
        try:
            if isinstance(key, Duplicate):
                ctx.sink.skip(inp.name, f"the same file as {key.first}, already read")
                continue
            book = parse_runbook(inp.read_text(), inp.stem)
        except NotARunbook as exc:
            ctx.sink.skip(inp.name, f"not a runbook: {exc}")
            continue
        finally:
            ctx.progress.advance()
        parsed.append(Parsed(inp, key, ctx.scope_for(inp), ctx.as_of or inp.mtime(), book))
    if not parsed:
        return
    names = Counter((p.scope, p.book.name) for p in parsed)
    if shared := sorted(n for (_, n), c in names.items() if c > 1):
        ctx.report.count("sharedNames", len(shared))
        ctx.report.notes.append("runbooks for the same alert, kept apart by their paths: "
                                + ", ".join(shared[:20]))
    model = _embed(ctx, parsed)
    links = _definitions(ctx, parsed)
    records = [plan_record(ctx, p, model, links.get((p.scope, p.book.name), []))
               for p in parsed]
    for rec in records:
        ctx.sink.add(rec)
    ctx.report.count("runbooks", len(records))
    ctx.report.count("planSteps", sum(len(p.book.steps) for p in parsed))
    ctx.report.count("stepCommands", sum(1 for p in parsed for s in p.book.steps if s.command))
    _retire_old_steps(ctx, parsed)


@dataclass(frozen=True)
class Duplicate:
    first: str  # the input already read for the same file


def runbook_keys(inputs: Sequence[Input]) -> list[str | Duplicate]:
    """The natural key of each input: the parent folder and the file stem
    (``node/NodeFilesystemSpaceFillingUp``), wherever the folder lies, so keys stay put when
    the data moves. Inputs whose keys still collide take more of their path until they
    differ; a second input of the same file (or of the same name) is a Duplicate."""
    paths: dict[int, tuple[str, ...]] = {}
    seen: dict[tuple[str, ...], str] = {}
    out: list[str | Duplicate] = []
    for i, inp in enumerate(inputs):
        full = inp.path.resolve() if inp.path is not None else Path(inp.name)
        parts = tuple(x for x in full.with_suffix("").parts if x not in ("/", "..", "."))
        out.append(Duplicate(seen[parts]) if parts in seen else "")
        if parts not in seen:
            seen[parts], paths[i] = inp.name, parts
    depth = dict.fromkeys(paths, 2)
    while True:
        keys = {i: "/".join(parts[-depth[i]:]) for i, parts in paths.items()}
        count = Counter(keys.values())
        clash = [i for i, k in keys.items() if count[k] > 1 and depth[i] < len(paths[i])]
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    for i, key in keys.items():
        out[i] = key
    return out


# -- facts -----------------------------------------------------------------------------------

def plan_record(ctx: IngestContext, p: Parsed, model: str | None,
                definitions: Sequence[str]) -> Record:
    book, scope, source, at = p.book, p.scope, p.source, p.at
    plan = plan_iri(ctx, scope, p.key)
    named = {NAMED_SECTIONS[k.lower()]: v for k, v in book.sections.items()
             if k.lower() in NAMED_SECTIONS}
    others = {k: v for k, v in book.sections.items() if k.lower() not in NAMED_SECTIONS}
    attrs: dict[str, object] = {"path": f"{p.key}{Path(p.inp.name).suffix}"}
    if book.title:
        attrs["title"] = book.title
    if book.display_title and book.display_title != book.title:
        attrs["displayTitle"] = book.display_title
    if others:
        attrs["sections"] = others
    props = {
        "name": book.name, "description": named.pop("description", None)
        or next(iter(book.sections.values())), **named,
        "mentionedTypes": ",".join(mentioned_types(ctx, book)) or None,
        "runbookUrl": _url(ctx, p), "ingestScope": scope,
        "attributes": json.dumps(attrs, sort_keys=True),
    }
    if model:
        props["embeddingModel"] = model
    entities = [Entity(plan, "OperationPlan", props, source, at)]
    relations = [Relation("mitigates", plan, d, {}, source) for d in definitions]
    prev: str | None = None
    for step in book.steps:
        iri = ctx.iri(scope, "PlanStep", f"{p.key}/{step.order}")
        entities.append(Entity(iri, "PlanStep", {
            "name": " / ".join(x for x in (step.section, step.subsection) if x),
            "stepOrder": step.order, "description": step.text, "command": step.command,
            "attributes": json.dumps({"language": step.language}) if step.language else None,
        }, source, at))
        relations.append(Relation("hasStep", plan, iri, {}, source, at))
        if prev:
            relations.append(Relation("nextStep", prev, iri, {}, source, at))
        prev = iri
    return Record(p.inp.name, f"line {book.line}", entities, relations)


def plan_iri(ctx: IngestContext, scope: str, key: str) -> str:
    return ctx.iri(scope, "OperationPlan", key)


def mentioned_types(ctx: IngestContext, book: Runbook) -> list[str]:
    """Ontology classes named in the runbook's text, sorted (see :data:`VOCABULARY`)."""
    text = "\n".join(book.sections.values())
    found = {VOCABULARY[int(m.lastgroup[1:])][1] for m in _VOCAB.finditer(text) if m.lastgroup}
    return sorted(c for c in found if c in ctx.kg.onto.classes)


def embedding_text(book: Runbook) -> str:
    """What is embedded: the alert name in words, then the sections' prose in order (the
    model reads the first 256 word pieces, so Meaning and Impact count most)."""
    words = _CAMEL.sub(" ", book.name)
    return " ".join([f"{words}.", *(plain_text(t) for t in book.sections.values())]).strip()


def _url(ctx: IngestContext, p: Parsed) -> str | None:
    template = ctx.options.get("url_template")
    if not template:
        return None
    path = Path(p.inp.name)
    return str(template).format(dir=path.parent.name, stem=path.stem, lower=path.stem.lower(),
                                name=p.book.name)


# -- links, vectors, retirement --------------------------------------------------------------

def _definitions(ctx: IngestContext, parsed: Sequence[Parsed]) -> dict[tuple[str, str],
                                                                      list[str]]:
    """Live AlertDefinitions named like the runbooks, per (runbook scope, name)."""
    out: dict[tuple[str, str], list[str]] = {}
    for scope in sorted({p.scope for p in parsed}):
        alerts_scope = str(ctx.options.get("alerts_scope") or scope)
        names = sorted({p.book.name for p in parsed if p.scope == scope})
        rows = ctx.kg.cypher(
            "MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND d.ingestScope = $scope "
            "AND d.name IN $names AND d.validTo IS NULL RETURN d.iri, d.name",
            {"scope": alerts_scope, "names": names}).rows
        for iri, name in sorted(rows):
            out.setdefault((scope, name), []).append(iri)
    ctx.report.count("mitigatesLinks", sum(len(v) for v in out.values()))
    return out


def _embed(ctx: IngestContext, parsed: Sequence[Parsed]) -> str | None:
    """Store the runbooks' vectors; the model id, or None (and a note) without them."""
    from ingest import text_vectors

    if not ctx.options.get("embed", True):
        return None
    if ctx.sink.dry_run:  # validate only: do not load the model or touch the vector file
        return text_vectors.model_id() if text_vectors.available() else None
    texts = {plan_iri(ctx, p.scope, p.key): embedding_text(p.book) for p in parsed}
    try:
        model, embedded = text_vectors.store_vectors(ctx.data_dir / "vectors" / VECTOR_FILE,
                                                     texts)
    except text_vectors.EmbeddingUnavailable as exc:
        ctx.report.notes.append(f"runbooks ingested without text vectors: {exc}")
        return None
    ctx.report.count("vectorsEmbedded", embedded)
    return model


def _retire_old_steps(ctx: IngestContext, parsed: Sequence[Parsed]) -> None:
    """Retire the steps an earlier version of a runbook had beyond its current last one."""
    count = {plan_iri(ctx, p.scope, p.key): (len(p.book.steps), p) for p in parsed}
    ctx.sink.flush()
    rows = ctx.kg.cypher(
        "MATCH (p:Entity)-[:hasStep]->(s:Entity) WHERE p.iri IN $plans AND s.validTo IS NULL "
        "RETURN p.iri, s.iri, s.stepOrder", {"plans": sorted(count)}).rows
    by_source: dict[str, tuple[list[Entity], list[Relation]]] = {}
    for plan, step, order in rows:
        n, p = count[plan]
        if order is None or order <= n:
            continue
        at = p.at or now_utc()
        ents, rels = by_source.setdefault(p.source, ([], []))
        ents.append(Entity(step, "PlanStep", {}, p.source, valid_to=at))
        rels.append(Relation("hasStep", plan, step, {}, p.source, valid_to=at))
        if order > 1:
            prev = ctx.iri(p.scope, "PlanStep", f"{p.key}/{order - 1}")
            rels.append(Relation("nextStep", prev, step, {}, p.source, valid_to=at))
    for source, (ents, rels) in by_source.items():
        _, live = ctx.kg.store.fetch([], [r.key for r in rels])
        rels = [r for r in rels if r.key in live]
        summary = ctx.sink.write_now(FactBatch.of(source, ents, rels))
        ctx.report.updated -= summary.updated + summary.relations_updated
        ctx.report.retired += len(ents) + len(rels)
