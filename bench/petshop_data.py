"""The PetShop dataset (Hardt et al. 2023, CC BY 4.0) in AutoCNC's documented ingest formats.

Read by ``bench/rca_petshop.py`` (its docstring describes the conversion step by step):
:func:`load_cases` lists the issues with their ground truth, :func:`ingest_case` writes one
issue through the product's ingest path (topology as a dependency CSV, the normal reference
and the issue's metrics as PetShop wide CSV, the SLO violation as an Alertmanager v4
webhook payload). Nothing here is seen by the engine except the ingested facts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest import run_ingest
from ingest.base import Input
from kg.graph import KnowledgeGraph
from ontology import mint_iri

ROOT = Path(__file__).resolve().parents[1]
PETSHOP = ROOT.parent / "shared" / "data" / "petshop" / "dataset"
SCENARIOS = ("low_traffic", "high_traffic", "temporal_traffic1", "temporal_traffic2")
REFERENCE_FALLBACK = "low_traffic"  # normal period for scenarios without their own


@dataclass(frozen=True)
class Case:
    scenario: str
    split: str
    issue: str
    dir: Path
    target_metric: str
    target_node: str
    target_stat: str
    at: datetime
    truth: str

    @property
    def scope(self) -> str:
        return f"petshop/{self.scenario}/{self.split}/{self.issue}"

    @property
    def family(self) -> str:
        return self.scenario.rstrip("0123456789")

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.split}/{self.issue}"

    def iri(self, node: str) -> str:
        return mint_iri(self.scope, "Service", node)


def load_cases(root: Path) -> list[Case]:
    """The issues of every scenario, train then test, by issue number."""
    cases = []
    for sc in SCENARIOS:
        for split in ("train", "test"):
            issues = sorted((root / sc / split).iterdir(), key=lambda p: int(p.name.split("_")[1]))
            for d in issues:
                t = json.loads((d / "target.json").read_text())
                cases.append(Case(sc, split, d.name, d, t["target"]["metric"],
                                  t["target"]["node"], t["target"]["agg"],
                                  datetime.fromtimestamp(t["target"]["timestamp"], UTC),
                                  t["root_cause"]["node"]))
    return cases


# -- conversion into the documented ingest formats ------------------------------------------

def dependency_csv(graph_csv: Path) -> bytes:
    """The adjacency matrix as a dependency CSV (``caller,callee``)."""
    rows = list(csv.reader(io.StringIO(graph_csv.read_text())))
    callees = rows[0][1:]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["caller", "callee"])
    for row in rows[1:]:
        for callee, cell in zip(callees, row[1:], strict=True):
            if cell.strip() not in ("", "0", "0.0"):
                w.writerow([row[0], callee])
    return out.getvalue().encode()


def window_times(metrics_csv: Path) -> list[float]:
    """The Unix times of a PetShop metrics file's rows."""
    lines = metrics_csv.read_text().splitlines()[4:]
    return [float(line.split(",", 1)[0]) for line in lines if line.strip()]


def reference_csv(normal_csv: Path, first_ts: float, step: float, rows: int) -> bytes:
    """The last ``rows`` rows of a normal period, re-timed to end one ``step`` before
    ``first_ts`` (PetShop wide CSV, header kept)."""
    lines = normal_csv.read_text().splitlines()
    header, data = lines[:4], [ln for ln in lines[4:] if ln.strip()][-rows:]
    start = first_ts - step * len(data)
    body = [f"{start + i * step:.1f},{ln.split(',', 1)[1]}" for i, ln in enumerate(data)]
    return ("\n".join(header + body) + "\n").encode()


def alert_payload(case: Case) -> dict[str, Any]:
    """The SLO violation as an Alertmanager v4 webhook notification."""
    labels = {"alertname": "SLOViolation", "service": case.target_node,
              "slo_metric": case.target_metric, "statistic": case.target_stat,
              "severity": "critical"}
    alert = {"status": "firing", "labels": labels,
             "annotations": {"summary": f"{case.target_node} {case.target_metric} "
                                        f"({case.target_stat}) violates its SLO"},
             "startsAt": case.at.isoformat().replace("+00:00", "Z"),
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": f"slo-{case.scenario}-{case.split}-{case.issue}"}
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"SLOViolation\"}}:{case.scope}",
            "status": "firing", "receiver": "autocnc", "groupLabels": {},
            "commonLabels": labels, "commonAnnotations": {}, "externalURL": "",
            "alerts": [alert]}


def reference_for(root: Path, case: Case) -> Path:
    own = root / case.scenario / "noissue" / "metrics.csv"
    return own if own.exists() else root / REFERENCE_FALLBACK / "noissue" / "metrics.csv"


def ingest_case(kg: KnowledgeGraph, root: Path, case: Case, reference_rows: int,
                detector: dict[str, Any]) -> dict[str, int]:
    """Topology, normal reference, issue metrics and the alert of one issue."""
    scope = case.scope
    counts: dict[str, int] = {}
    reports = [run_ingest(kg, "topology", [Input.of_bytes(
        "graph.csv", dependency_csv(root / case.scenario / "graph.csv"))], scope=scope,
        as_of=case.at - timedelta(days=1))]
    times = window_times(case.dir / "metrics.csv")
    step = min(b - a for a, b in zip(times, times[1:], strict=False))
    ref = reference_csv(reference_for(root, case), times[0], step, reference_rows)
    reports.append(run_ingest(kg, "metrics", [Input.of_bytes("reference.csv", ref)],
                              scope=scope, options=detector))
    reports.append(run_ingest(kg, "metrics", [Input.file(case.dir / "metrics.csv")],
                              scope=scope, options=detector))
    reports.append(run_ingest(kg, "alerts", [Input.of_bytes(
        "alert.json", json.dumps(alert_payload(case)).encode())], scope=scope,
        options={"format": "alertmanager"}))
    for rep in reports:
        if rep.rejected:
            raise SystemExit(f"{case.name}: {rep.kind} rejected {rep.rejected[:3]}")
        for k, v in rep.counts.items():
            counts[k] = counts.get(k, 0) + v
    return counts


def graph_nodes(graph_csv: Path) -> list[str]:
    return next(csv.reader(io.StringIO(graph_csv.read_text())))[1:]
