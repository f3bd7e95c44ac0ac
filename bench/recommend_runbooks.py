"""Runbook recommendation for alerts that lost their name, held out; CLI and server latency.

    python bench/recommend_runbooks.py [--runbooks DIR] [--rules DIR] [--skip-latency]
                                       [--kge] [--epochs 40]

1. Ingest the runbooks (default: the prometheus-operator runbooks in ``../shared/data``) and
   the alert rules (default: kube-prometheus) into a fresh embedded store. The queries are
   the alert rules whose ``runbook_url`` names a runbook file we have; the URL is only the
   answer key — the engine never reads it.
2. Each rule becomes the alert Prometheus would send: labels (the rule's, the ones its
   annotations print and its expression groups by, valued by the expression's exact
   matchers where it has them), rendered summary and description, and the ``generatorURL``
   carrying its expression. (a) the full alert; (b) **masked**: no ``alertname``, no
   ``runbook_url``, and every alert definition of the answer runbook retired in the store
   while its queries are asked (restored after), so nothing can look the answer up.
3. The engine's signals are recorded for every runbook and query of (b), and its weights
   are fitted on them (``bench/recommend_fit.py``). **Headline: held out** — leave one
   runbook family (folder) out, and 5 folds of runbooks; each query is ranked by weights
   fitted without it. In-sample (fitted on all) only as a labelled extra: those are the
   weights the engine ships. Baselines: plain BM25 over the whole Markdown, plain embedding
   cosine, and the weights before this benchmark fitted them.
4. Latency: a cold ``autocnc recommend`` (a new process, the catalogue built and kept, then
   kept: taken from the data directory) and ``autocnc serve`` over HTTP, each alert text new
   (no cached query vector): p50 / p99 of 180 requests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recommend_fit import Query, fit_logit, group_folds, held_out, rank_of, summary  # noqa: E402
from recommend_fit import fit as fit_weights  # noqa: E402

from ingest import inputs_for, run_ingest  # noqa: E402
from ingest.alert_rules import AlertRule, read_rule_file  # noqa: E402
from ingest.base import Input  # noqa: E402
from ingest.runbooks import runbook_keys  # noqa: E402
from kg.config import load_settings  # noqa: E402
from kg.facts import Entity, FactBatch, now_utc  # noqa: E402
from kg.graph import KnowledgeGraph  # noqa: E402
from ontology import mint_iri  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCOPE = "kube-prometheus"
PRE_BENCH_WEIGHTS = {"alertDefinition": 2.0, "lexical": 1.0, "semantic": 0.5,
                     "entityTypes": 0.2, "metrics": 0.3}  # the defaults before this fit


@dataclass(frozen=True)
class Case:
    rule: AlertRule
    answer: str  # plan IRI of the runbook the rule's runbook_url names
    family: str  # the runbook's folder


def cases(runbooks: Path, rules: Path) -> tuple[list[Case], dict[str, str]]:
    """Alert rules whose runbook_url names a runbook file we have; and plan IRI -> the
    runbook's Markdown (for the baselines)."""
    files = sorted(runbooks.rglob("*.md"))
    keys = runbook_keys([Input.file(f) for f in files])
    by_url: dict[tuple[str, str], str] = {}
    docs: dict[str, str] = {}
    for f, key in zip(files, keys, strict=True):
        if isinstance(key, str):
            iri = mint_iri(SCOPE, "OperationPlan", key)
            by_url[(f.parent.name, f.stem.lower())] = iri
            docs[iri] = f.read_text(encoding="utf-8")
    out = []
    for f in sorted(rules.rglob("*.yaml")):
        for rule in read_rule_file(Input.file(f), f.read_text(encoding="utf-8")).rules:
            url = rule.annotations.get("runbook_url", "").rstrip("/").split("/")
            if len(url) >= 2 and (url[-2], url[-1]) in by_url:
                out.append(Case(rule, by_url[(url[-2], url[-1])], url[-2]))
    return out, docs


# -- the alert Prometheus sends for a rule --------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_LABEL_REF = re.compile(r"\$labels\.(\w+)")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_EXACT = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def alert_of(rule: AlertRule, masked: bool, tag: str = "") -> dict[str, Any]:
    """The alert as delivered: labels the alert carries, annotations rendered with them,
    the generatorURL with the expression; masked: without alertname and runbook_url."""
    exact = {k: v for k, v in _EXACT.findall(rule.expr) if v}
    carried = {x.strip() for m in _BY.finditer(rule.expr) for x in m[1].split(",") if x.strip()}
    for text in rule.annotations.values():
        carried |= set(_LABEL_REF.findall(text))
    labels = {k: exact.get(k, k) for k in sorted(carried)}
    labels.update({k: v for k, v in rule.labels.items() if k != "alertname"})
    if not masked:
        labels["alertname"] = rule.alert

    def render(text: str) -> str:
        def action(m: re.Match[str]) -> str:
            refs = _LABEL_REF.findall(m[1])
            return " ".join(labels.get(r, r) for r in refs) if refs else "1"

        return _TEMPLATE.sub(action, text)

    ann = {k: render(v) + (f" {tag}" if tag and k == "description" else "")
           for k, v in rule.annotations.items()
           if not masked or k in ("summary", "description", "message")}
    return {"labels": labels, "annotations": ann, "generatorURL":
            f"http://prometheus.example:9090/graph?g0.expr={quote(rule.expr)}&g0.tab=1"}


def plain_text(alert: dict[str, Any]) -> str:
    """What the baselines read: annotations and labels."""
    ann, labels = alert["annotations"], alert["labels"]
    return " ".join([labels.get("alertname", ""), ann.get("summary", ""),
                     ann.get("description", ""),
                     *(f"{k}={v}" for k, v in labels.items() if k != "alertname")])


class PlainBM25:
    """Baseline: BM25 (k1 1.2, b 0.75) over each runbook's whole Markdown file, lower-cased
    word tokens, no stemming, no stop words."""

    def __init__(self, docs: dict[str, str]) -> None:
        self.iris = list(docs)
        self.tf = [Counter(re.findall(r"\w+", d.lower())) for d in docs.values()]
        self.len = np.array([sum(t.values()) for t in self.tf], dtype=float)
        df = Counter(t for tf in self.tf for t in tf)
        n = len(self.tf)
        self.idf = {t: float(np.log1p((n - c + 0.5) / (c + 0.5))) for t, c in df.items()}

    def rank(self, text: str, answer: str) -> int:
        q = re.findall(r"\w+", text.lower())
        avg = self.len.mean()
        scores = np.zeros(len(self.tf))
        for j, tf in enumerate(self.tf):
            norm = 1.2 * (1 - 0.75 + 0.75 * self.len[j] / avg)
            scores[j] = sum(self.idf[t] * tf[t] * 2.2 / (tf[t] + norm) for t in q if t in tf)
        ranked = [self.iris[j] for j in np.argsort(-scores, kind="stable")]
        return ranked.index(answer) + 1


class PlainEmbedding:
    """Baseline: cosine of the alert text's vector with each runbook's stored vector."""

    def __init__(self, data_dir: Path) -> None:
        from ingest.text_vectors import VectorFile

        _, rows = VectorFile(data_dir / "vectors" / "runbooks.npz").load()
        self.iris = sorted(rows)
        self.m = np.vstack([rows[i][1] for i in self.iris])

    def rank(self, text: str, answer: str) -> int:
        from ingest.text_vectors import embed

        s = self.m @ embed([text])[0]
        return [self.iris[j] for j in np.argsort(-s, kind="stable")].index(answer) + 1


# -- the store --------------------------------------------------------------------------------

def open_store(path: Path) -> KnowledgeGraph:
    return KnowledgeGraph.open(load_settings(data_dir=path, store="embedded"), writer=True)


def ingest_knowledge(kg: KnowledgeGraph, runbooks: Path, rules: Path) -> None:
    for kind, path in (("runbooks", runbooks), ("alerts", rules)):
        run_ingest(kg, kind, inputs_for(kind, [str(path)]), scope=SCOPE)


def own_definitions(kg: KnowledgeGraph, answer: str, rule_names: set[str]) -> list[str]:
    """The live definitions the answer runbook mitigates or whose rules name it."""
    rows = kg.cypher(
        "MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND d.validTo IS NULL AND "
        "d.name IN $names RETURN d.iri", {"names": sorted(rule_names)}).rows
    linked = kg.cypher("MATCH (p:Entity)-[:mitigates]->(d:Entity) WHERE p.iri = $p AND "
                       "d.validTo IS NULL RETURN d.iri", {"p": answer}).rows
    return sorted({r[0] for r in rows} | {r[0] for r in linked})


def set_retired(kg: KnowledgeGraph, iris: Sequence[str], retired: bool) -> None:
    """Retire (``validTo`` now) or restore (``validTo`` removed) alert definitions."""
    when = now_utc() if retired else None
    source = f"alerts/rules:{SCOPE}"
    kg.write(FactBatch.of(source, [Entity(i, "AlertDefinition", {}, source, valid_to=when)
                                   for i in iris]))


# -- 1-3: quality ----------------------------------------------------------------------------

@dataclass
class Recorded:
    masked: list[Query]
    full: list[Query]
    nameless: list[Query]  # (c) masked alert, its definitions present
    bm25: list[int]
    embedding: list[int]
    names: list[str]  # the signals, in matrix order


def record(kg: KnowledgeGraph, all_cases: list[Case], docs: dict[str, str]) -> Recorded:
    """The signal matrices of (a) and (b) for every case, and the baselines' ranks."""
    from reasoning.recommend import SIGNALS, Recommender, from_alerts

    rec = Recommender(kg)
    names = [k for k in SIGNALS if k != "successRate"]
    bm25, emb = PlainBM25(docs), PlainEmbedding(kg.settings.data_dir)
    out = Recorded([], [], [], [], [], names)

    def query(alert: dict[str, Any], c: Case) -> Query:
        cat = rec.catalogue()
        runbooks = [i for i, it in enumerate(cat.items) if it.kind == "runbook"]
        sig = rec.signals(from_alerts(alert, kg, SCOPE))
        matrix = np.vstack([sig.values[k][runbooks] for k in names])
        items = [cat.items[i] for i in runbooks]
        tie = np.empty(len(items), dtype=np.int64)  # the ranker's tie order: name, IRI
        tie[np.lexsort(([it.iri for it in items], [it.name for it in items]))] = \
            np.arange(len(items))
        answer = next(k for k, it in enumerate(items) if it.iri == c.answer)
        return Query(matrix, tie, answer, c.answer, c.family)

    for c in all_cases:
        out.full.append(query(alert_of(c.rule, masked=False), c))
        out.nameless.append(query(alert_of(c.rule, masked=True), c))
    by_answer: dict[str, list[Case]] = {}
    for c in all_cases:
        by_answer.setdefault(c.answer, []).append(c)
    for answer, group in by_answer.items():
        own = own_definitions(kg, answer, {c.rule.alert for c in group})
        set_retired(kg, own, True)
        try:
            for c in group:
                alert = alert_of(c.rule, masked=True)
                out.masked.append(query(alert, c))
                out.bm25.append(bm25.rank(plain_text(alert), c.answer))
                out.embedding.append(emb.rank(plain_text(alert), c.answer))
        finally:
            set_retired(kg, own, False)
    return out


def save_recorded(r: Recorded, path: Path) -> None:
    arrays: dict[str, Any] = {"names": np.array(r.names), "bm25": np.array(r.bm25),
                              "embedding": np.array(r.embedding)}
    for part in ("masked", "full", "nameless"):
        qs: list[Query] = getattr(r, part)
        for k, q in enumerate(qs):
            arrays[f"{part}/{k}/signals"], arrays[f"{part}/{k}/order"] = q.signals, q.order
        arrays[f"{part}/meta"] = np.array(json.dumps(
            [[q.answer, q.group, q.family] for q in qs]))
    np.savez(path, **arrays)


def load_recorded(path: Path) -> Recorded:
    with np.load(path, allow_pickle=False) as f:
        parts = {}
        for part in ("masked", "full", "nameless"):
            meta = json.loads(str(f[f"{part}/meta"]))
            parts[part] = [Query(f[f"{part}/{k}/signals"], f[f"{part}/{k}/order"], a, g, fam)
                           for k, (a, g, fam) in enumerate(meta)]
        return Recorded(parts["masked"], parts["full"], parts["nameless"], list(f["bm25"]),
                        list(f["embedding"]), [str(x) for x in f["names"]])


def row(name: str, ranks: Sequence[int]) -> dict[str, float]:
    s = summary(ranks)
    print(f"  {name:44s} {s['hits1']:7.3f} {s['hits3']:7.3f} {s['mrr']:7.3f}")
    return s


def report(r: Recorded, docs: int) -> dict[str, float]:
    """Print the held-out headline, the baselines and the in-sample extras; the fitted
    weights (all data) are returned."""
    names, masked = r.names, r.masked
    start = {**{k: 0.0 for k in names}, "lexical": 1.0}
    print(f"\nqueries: {len(masked)} alert rules linking one of {docs} runbooks "
          f"({len({q.group for q in masked})} runbooks asked, "
          f"{len({q.family for q in masked})} families)")
    print("\n(b) masked: no alertname / runbook_url, the runbook's own definitions retired")
    print(f"  {'method':44s} {'Hits@1':>7s} {'Hits@3':>7s} {'MRR':>7s}")
    lofo, lofo_w = held_out(masked, names, start, lambda q: q.family)
    head = row("engine, held out (leave one family out)", lofo)
    kfold, _ = held_out(masked, names, start, group_folds(masked, 5))
    row("engine, held out (5 folds of runbooks)", kfold)
    logit, _ = held_out(masked, names, start, lambda q: q.family, fit_logit)
    row("  other fit: softmax likelihood, held out (family)", logit)
    bm = row("BM25 baseline (whole Markdown, word tokens)", r.bm25)
    row("embedding baseline (MiniLM cosine)", r.embedding)
    pre = np.array([PRE_BENCH_WEIGHTS.get(k, 0.0) for k in names])
    row("engine, weights before this fit", [rank_of(q, pre) for q in masked])
    fitted = fit_weights(masked, names, start)
    vec = np.array([fitted[k] for k in names])
    ins = row("in-sample extra: engine fitted on all", [rank_of(q, vec) for q in masked])
    for k in ("title", "expressionTerms", "semantic", "metrics", "family"):
        abl = vec.copy()
        abl[names.index(k)] = 0.0
        row(f"in-sample extra:   - {k}", [rank_of(q, abl) for q in masked])
    print(f"  held out / BM25: Hits@1 x{head['hits1'] / bm['hits1']:.3f}  MRR "
          f"x{head['mrr'] / bm['mrr']:.3f};  in-sample / held-out MRR "
          f"{ins['mrr']:.3f} / {head['mrr']:.3f}")
    print(f"  targets held out Hits@1 >= 0.92 and MRR >= 0.95: "
          f"{'met' if head['hits1'] >= 0.92 and head['mrr'] >= 0.95 else 'NOT met'}")
    spread = {k: sorted({round(w[k], 2) for w in lofo_w.values()}) for k in names}
    print("  weights over the held-out fits: " + ", ".join(
        f"{k} {v}" for k, v in spread.items() if v != [0.0]))
    fitted["alertDefinition"] = max(2.0, sum(v for k, v in fitted.items()
                                             if k != "alertDefinition"))
    print("  fitted on all (shipped as the defaults): " + json.dumps(
        {k: v for k, v in fitted.items() if v}))
    full_vec = np.array([fitted[k] for k in names])
    print("\n(a) full alert (alertname, generatorURL, labels, annotations)")
    row("engine, fitted weights", [rank_of(q, full_vec) for q in r.full])
    print("(c) no alertname / runbook_url, the alert definitions in the graph")
    row("engine, fitted weights", [rank_of(q, full_vec) for q in r.nameless])
    no_def = full_vec.copy()
    no_def[names.index("alertDefinition")] = 0.0
    row("  without alertDefinition (generatorURL expression)",
        [rank_of(q, no_def) for q in r.nameless])
    misses = Counter(q.group.rsplit("/", 1)[-1] for q, k in zip(masked, lofo, strict=True)
                     if k > 1)
    if misses:
        print("  (b) held-out misses: " + ", ".join(f"{n} x{c}" if c > 1 else n
                                                   for n, c in sorted(misses.items())))
    return fitted


# -- 4: latency ------------------------------------------------------------------------------

def cli_times(data_dir: Path, alert_file: Path, runs: int = 3) -> list[float]:
    """Wall time of ``autocnc recommend --alert`` as new processes (the first one after
    ingest builds and keeps the catalogue)."""
    autocnc = str(Path(sys.executable).with_name("autocnc"))
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data_dir)}
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = subprocess.run([autocnc, "recommend", "--alert", str(alert_file), "--json",
                              "--limit", "3"], env=env, capture_output=True, text=True,
                             check=False)
        out.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"autocnc recommend failed: {res.stderr[-2000:]}")
    return out


def settle(client: Any, within_s: float = 300.0) -> None:
    """Wait until the server's RDF view has caught up with the graph it found on start
    (it does so in the background, beside the requests): steady state."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if client.get("/healthz").json()["views"]["rdf"]["lag"] == 0:
            return
        time.sleep(1)
    print("  (the RDF view had not caught up: requests share the CPU with it)")


def latency(data_dir: Path, all_cases: list[Case]) -> None:
    import httpx
    from server import running_server

    alert_file = data_dir.parent / "alert.json"
    alert_file.write_text(json.dumps(alert_of(all_cases[0].rule, masked=True, tag="cli")))
    cold = cli_times(data_dir, alert_file)
    print(f"\nstandalone `autocnc recommend --alert` (new process each): first after ingest "
          f"{cold[0]:.2f} s (builds and keeps the catalogue), then "
          + ", ".join(f"{t:.2f}" for t in cold[1:]) + " s; target <= 3 s: "
          + ("met" if max(cold) <= 3 else "NOT met"))
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data_dir), "AUTOCNC_STORE": "embedded"}
    with running_server(env) as base, httpx.Client(base_url=base, timeout=60) as client:
        settle(client)
        via = cli_times(data_dir, alert_file, runs=2)
        for alert in (alert_of(all_cases[0].rule, True, "warm"),
                      alert_of(all_cases[0].rule, False, "warm")):
            client.post("/v1/recommendations", json={"alert": alert, "scope": SCOPE}
                        ).raise_for_status()
        took: dict[str, list[float]] = {}
        server_ms: list[float] = []
        for i, c in enumerate(all_cases):  # every text new: no query vector is cached
            for form, alert in (("alert without name", alert_of(c.rule, True, f"(#{i}m)")),
                                ("full alert", alert_of(c.rule, False, f"(#{i}f)"))):
                t0 = time.perf_counter()
                res = client.post("/v1/recommendations", json={"alert": alert,
                                                               "scope": SCOPE})
                took.setdefault(form, []).append((time.perf_counter() - t0) * 1000)
                res.raise_for_status()
                server_ms.append(res.json()["tookMs"])
            t0 = time.perf_counter()
            client.post("/v1/recommendations", json={
                "text": f"{c.rule.annotations.get('summary', '')} (ticket {i})"}
            ).raise_for_status()
            took.setdefault("free text", []).append((time.perf_counter() - t0) * 1000)
    every = [x for xs in took.values() for x in xs]
    slow = sorted(range(len(server_ms)), key=lambda i: -server_ms[i])[:3]
    print("  slowest inside the engine: " + ", ".join(
        f"#{i} {server_ms[i]:.0f} ms" for i in slow))
    print("`autocnc recommend` through the server: " + ", ".join(f"{t:.2f}" for t in via)
          + " s")
    print(f"autocnc serve, POST /v1/recommendations, {len(every)} requests, each text new "
          "(HTTP round trip from a local client):")
    for form, xs in took.items():
        q = np.percentile(xs, [50, 99])
        print(f"  {form:20s} p50 {q[0]:6.1f} ms  p99 {q[1]:6.1f} ms")
    p = np.percentile(every, [50, 99])
    s = np.percentile(server_ms, [50, 99])
    print(f"  {'all':20s} p50 {p[0]:6.1f} ms  p99 {p[1]:6.1f} ms (inside the engine: p50 "
          f"{s[0]:.1f}, p99 {s[1]:.1f} ms); target p99 <= 50 ms: "
          f"{'met' if p[1] <= 50 else 'NOT met'}")


# -- 5: link prediction ------------------------------------------------------------------------

def link_prediction(path: Path, runbooks: Path, rules: Path, epochs: int) -> None:
    from reasoning.embeddings.kge import KGEConfig, evaluate_link_prediction
    from reasoning.embeddings.triples import graph_triples, split_triples

    kg = open_store(path)
    try:
        ingest_knowledge(kg, runbooks, rules)
        for scope in ("online-boutique", "sock-shop", "train-ticket"):
            run_ingest(kg, "topology", inputs_for("topology", [str(DATA / "topology" / scope)]),
                       scope=scope)
        triples = graph_triples(kg.snapshot)
    finally:
        kg.close()
    train, valid, test = split_triples(triples, seed=0)
    print(f"\nlink prediction on the real-data graph: {len(triples)} triples; train "
          f"{len(train)}, valid {len(valid)}, test {len(test)}")
    for model in ("rotate", "nodepiece"):
        res = evaluate_link_prediction(train, valid, test, KGEConfig(model=model,
                                                                     epochs=epochs))
        print(f"  {model:10s} MRR {res['mrr']:.3f}  Hits@10 {res['hits10']:.3f}  "
              f"Hits@1 {res['hits1']:.3f}")
        print(f"  {'degree':10s} MRR {res['degree_mrr']:.3f}  Hits@10 "
              f"{res['degree_hits10']:.3f}  Hits@1 {res['degree_hits1']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runbooks", type=Path, default=DATA / "runbooks")
    ap.add_argument("--rules", type=Path, default=DATA / "alert-rules" / "kube-prometheus")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--kge", action="store_true", help="also the KGE link prediction")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--signals", type=Path, help="keep the recorded signals in this .npz "
                    "(reused when it exists: refit without asking again)")
    args = ap.parse_args()
    all_cases, docs = cases(args.runbooks, args.rules)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        kg = open_store(data_dir)
        try:
            t0 = time.perf_counter()
            ingest_knowledge(kg, args.runbooks, args.rules)
            print(f"ingested {len(docs)} runbooks and the rules in "
                  f"{time.perf_counter() - t0:.1f} s")
            if not args.skip_quality:
                recorded = load_recorded(args.signals) if args.signals and \
                    args.signals.exists() else record(kg, all_cases, docs)
                if args.signals and not args.signals.exists():
                    save_recorded(recorded, args.signals)
                report(recorded, len(docs))
        finally:
            kg.close()
        if not args.skip_latency:
            latency(data_dir, all_cases)
        if args.kge:
            link_prediction(Path(tmp) / "kge", args.runbooks, args.rules, args.epochs)
    print("\ndata: prometheus-operator runbooks and kube-prometheus rules (Apache-2.0)"
          + ("; online-boutique, sock-shop, train-ticket manifests (Apache-2.0)"
             if args.kge else ""))


if __name__ == "__main__":
    main()
