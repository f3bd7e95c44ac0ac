"""Metrics ingest on every backend: PetShop wide CSV, Prometheus exposition, long CSV and
Parquet; samples in the time-series store, summaries and anomalies in the graph."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from ingest import run_ingest
from ingest.anomaly import DetectorConfig, DetectorState, detect
from ingest.base import Input, expand
from ingest.metrics import PATTERNS
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from kg.timeseries import TimeSeriesStore, series_id
from ontology import mint_iri
from tests.conftest import SHARED_DATA

PETSHOP = SHARED_DATA / "petshop" / "dataset" / "low_traffic"
SCOPE = "test/shop"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP = 60_000
N = 200
SPIKE = 150


def services(kg: KnowledgeGraph, scope: str, names: list[str]) -> None:
    """A topology-like batch: the Service entities the series should resolve to."""
    kg.write(FactBatch.of("test/topology", [
        Entity(mint_iri(scope, "Service", n), "Service", {"name": n}) for n in names]))


def synthetic() -> dict[str, np.ndarray]:
    """A noisy series with one spike at SPIKE, and a flat one."""
    rng = np.random.default_rng(3)
    noisy = np.round(10 + rng.normal(0, 0.2, N), 4)
    noisy[SPIKE] = 30.0
    return {"cart": noisy, "checkout": np.full(N, 5.0)}


def exposition(series: dict[str, np.ndarray], rows: range = range(N)) -> str:
    out = ["# HELP app_latency_seconds Request latency.", "# TYPE app_latency_seconds gauge"]
    for k in rows:
        out += [f'app_latency_seconds{{service="{name}",path="/"}} {float(vals[k])!r} '
                f"{T0 + k * STEP}" for name, vals in series.items()]
    return "\n".join(out) + "\n"


def anomalies(kg: KnowledgeGraph, scope: str) -> list[list]:
    return kg.cypher(
        "MATCH (a:Entity)-[:detectedIn]->(s:Entity) WHERE s.ingestScope = $scope "
        "OPTIONAL MATCH (a)-[:aboutEntity]->(e:Entity) "
        "RETURN s.labels, a.startTime, a.endTime, a.direction, a.anomalyScore, "
        "a.observedValue, a.baselineValue, e.iri ORDER BY a.startTime", {"scope": scope}).rows


def test_petshop_issue_folder(kg: KnowledgeGraph) -> None:
    with (PETSHOP / "graph.csv").open() as fh:
        nodes = next(csv.reader(fh))[1:]
    scope = "petshop/low_traffic"
    services(kg, scope, nodes)
    folder = PETSHOP / "train" / "issue_0"
    inputs = expand([PETSHOP / "train" / "issue_0", PETSHOP / "graph.csv"], PATTERNS)
    report = run_ingest(kg, "metrics", inputs, scope=scope)
    assert report.rejected == [] and [s.file for s in report.skipped] == \
        [str(PETSHOP / "graph.csv")]
    with (folder / "metrics.csv").open() as fh:
        rows = list(csv.reader(fh))
    header, data = rows[:3], rows[4:]
    cells = sum(1 for r in data for c in r[1:] if c != "")
    columns = [c for c in range(1, len(header[0])) if any(r[c] for r in data)]
    assert report.counts["samples"] == cells == report.counts["samplesStored"]
    assert report.counts["series"] == len(columns)
    # a resolved series: PetSite latency Average, compared with the file's own numbers
    col = next(c for c in columns if (header[0][c], header[1][c], header[2][c]) ==
               ("PetSite", "latency", "Average"))
    values = [float(r[col]) for r in data if r[col]]
    row = kg.cypher(
        "MATCH (s:Entity)-[o:observes]->(e:Entity) WHERE s.metricName = 'latency' AND "
        "s.labels = $labels RETURN s.sampleCount, s.minValue, s.maxValue, s.meanValue, "
        "s.lastValue, s.startTime, s.endTime, e.iri, o.resolution, s.seriesId",
        {"labels": json.dumps({"service": "PetSite", "statistic": "Average"},
                              separators=(",", ":"))}).rows
    assert len(row) == 1
    count, lo, hi, mean, last, start, end, target, how, sid = row[0]
    assert count == len(values) and lo == min(values) and hi == max(values)
    assert mean == pytest.approx(sum(values) / len(values)) and last == values[-1]
    assert start.timestamp() == float(data[0][0]) and end.timestamp() == float(data[-1][0])
    assert target == mint_iri(scope, "Service", "PetSite") and how == "exact"
    samples = TimeSeriesStore.open(kg.settings.data_dir, read_only=True).read([sid])
    assert samples.value.tolist() == values
    assert sid == series_id(scope, "latency", {"service": "PetSite", "statistic": "Average"})
    # every series' node is in the call graph, so all resolve
    assert report.counts.get("unresolvedSeries", 0) == 0
    again = run_ingest(kg, "metrics", inputs, scope=scope)
    assert (again.created, again.updated) == (0, 0) and again.unchanged == report.created
    assert again.counts["samplesStored"] == 0


@pytest.mark.parametrize("fmt", ["prometheus", "long-csv", "long-parquet"])
def test_spike_gives_one_anomaly_flat_gives_none(kg: KnowledgeGraph, tmp_path: Path,
                                                  fmt: str) -> None:
    services(kg, SCOPE, ["cart", "checkout"])
    series = synthetic()
    path = tmp_path / {"prometheus": "m.prom", "long-csv": "m.csv",
                       "long-parquet": "m.parquet"}[fmt]
    if fmt == "prometheus":
        path.write_text(exposition(series))
    else:
        table = pa.table({
            "timestamp": [(T0 + k * STEP) / 1000 for k in range(N) for _ in series],
            "metric": ["app_latency_seconds"] * (N * len(series)),
            "labels": [f"service={name};path=/" for _ in range(N) for name in series],
            "value": [float(series[name][k]) for k in range(N) for name in series]})
        if fmt == "long-csv":
            pa_csv.write_csv(table, path)
        else:
            pq.write_table(table, path)
    report = run_ingest(kg, "metrics", [Input.file(path)], scope=SCOPE)
    assert report.rejected == [] and report.counts["series"] == 2
    found = anomalies(kg, SCOPE)
    assert len(found) == 1, found
    labels, start, end, direction, score, observed, baseline, about = found[0]
    assert json.loads(labels) == {"path": "/", "service": "cart"}
    assert start.timestamp() * 1000 == T0 + SPIKE * STEP == end.timestamp() * 1000
    assert direction == "up" and observed == 30.0 and score > 5
    assert baseline == pytest.approx(10, abs=0.2)
    assert about == mint_iri(SCOPE, "Service", "cart")
    summary = kg.cypher("MATCH (s:Entity) WHERE s.labels = $l RETURN s.unit, s.sampleCount, "
                        "s.minValue, s.maxValue, s.resolution",
                        {"l": '{"path":"/","service":"checkout"}'}).rows
    assert summary == [["s", N, 5.0, 5.0, "exact"]]


def test_two_halves_find_what_one_pass_finds(kg: KnowledgeGraph) -> None:
    services(kg, "whole", ["cart", "checkout"])
    services(kg, "halves", ["cart", "checkout"])
    series = synthetic()
    series["cart"][100:104] = [25.0, 26.0, 27.0, 3.0]  # a run across the split, then a dip
    whole = run_ingest(kg, "metrics", [Input.of_bytes("all.prom", exposition(series).encode())],
                       scope="whole")
    for rows in (range(0, 102), range(102, N)):
        half = run_ingest(kg, "metrics", [Input.of_bytes(
            "half.prom", exposition(series, rows).encode())], scope="halves")
        assert half.rejected == []
    one, two = anomalies(kg, "whole"), anomalies(kg, "halves")
    assert [r[:6] for r in one] == [r[:6] for r in two]
    assert [(r[3], r[5]) for r in one] == [("up", 27.0), ("down", 3.0), ("up", 30.0)]
    assert one[0][2].timestamp() * 1000 == T0 + 102 * STEP  # the run spans the split
    assert whole.counts["anomalies"] == 3
    q = ("MATCH (s:Entity) WHERE s.ingestScope = $scope RETURN s.labels, s.sampleCount, "
         "s.minValue, s.maxValue, s.meanValue, s.lastValue ORDER BY s.labels")
    a, b = kg.cypher(q, {"scope": "whole"}).rows, kg.cypher(q, {"scope": "halves"}).rows
    assert [r[:4] + [r[5]] for r in a] == [r[:4] + [r[5]] for r in b]
    assert [r[4] for r in a] == pytest.approx([r[4] for r in b])


def test_reingest_out_of_order_and_lost_state_add_nothing(kg: KnowledgeGraph) -> None:
    services(kg, SCOPE, ["cart", "checkout"])
    series = synthetic()
    later = Input.of_bytes("later.prom", exposition(series, range(100, N)).encode())
    first = Input.of_bytes("first.prom", exposition(series, range(0, 100)).encode())
    run_ingest(kg, "metrics", [later], scope=SCOPE)
    run_ingest(kg, "metrics", [first], scope=SCOPE)  # older samples: merged, recomputed
    assert [r[1].timestamp() * 1000 for r in anomalies(kg, SCOPE)] == [T0 + SPIKE * STEP]
    store = TimeSeriesStore.open(kg.settings.data_dir, read_only=True)
    cart = series_id(SCOPE, "app_latency_seconds", {"service": "cart", "path": "/"})
    assert store.read([cart]).value.tolist() == series["cart"].tolist()
    everything = Input.of_bytes("all.prom", exposition(series).encode())
    again = run_ingest(kg, "metrics", [everything], scope=SCOPE)
    assert (again.created, again.updated, again.counts["samplesStored"]) == (0, 0, 0)
    (kg.settings.data_dir / "timeseries" / "metrics-state.parquet").unlink()
    rebuilt = run_ingest(kg, "metrics", [everything], scope=SCOPE)
    assert (rebuilt.created, rebuilt.updated, rebuilt.counts["samplesStored"]) == (0, 0, 0)
    assert len(store.read(None)) == 2 * N
    counts = kg.cypher("MATCH (s:Entity) WHERE 'MetricSeries' IN s.types "
                       "RETURN s.sampleCount").rows
    assert counts == [[N], [N]]


def test_bad_records_rejected_with_line_good_ones_land(kg: KnowledgeGraph,
                                                       tmp_path: Path) -> None:
    prom = tmp_path / "bad.prom"
    prom.write_text("\n".join([
        "# TYPE up gauge",
        'up{job="a"} 1 1767225600000',
        'up{job="a" 1',  # line 3: no closing brace
        'up{job="a"} one 1767225660000',  # line 4: value
        'up{job="a"} 1 17672256.5',  # line 5: timestamp
        "# TYPE up sometimes",  # line 6: bad type
        'up{job="a",job="b"} 1',  # line 7: duplicate label
        'up{job="a"} NaN 1767225720000',
        'up{job="a"} +Inf 1767225780000',
        'up{job="a"} 0 1767225840000']) + "\n")
    long = tmp_path / "bad.csv"
    long.write_text("timestamp,metric,labels,value,unit\n"
                    "2026-01-01T00:00:00Z,q,job=b,1.5,ms\n"
                    "yesterday,q,job=b,2\n"  # line 3: wrong cell count
                    "2026-01-01T00:01:00Z,q,job=b,x,ms\n"  # line 4: value
                    "\n"
                    "not a time,q,job=b,3,ms\n"  # line 6: timestamp
                    "2026-01-01T00:03:00,q,job,4,ms\n"  # line 7: labels
                    "1767225840,q,job=b,5,ms\n")
    txt = tmp_path / "notes.txt"
    txt.write_text("just some notes, not metrics\n")
    report = run_ingest(kg, "metrics", [Input.file(prom), Input.file(long), Input.file(txt)],
                        scope=SCOPE)
    got = sorted((Path(r.file).name, r.where) for r in report.rejected)
    assert got == [("bad.csv", "line 3"), ("bad.csv", "line 4"), ("bad.csv", "line 6"),
                   ("bad.csv", "line 7"), ("bad.prom", "line 3"), ("bad.prom", "line 4"),
                   ("bad.prom", "line 5"), ("bad.prom", "line 6"), ("bad.prom", "line 7")]
    assert [Path(s.file).name for s in report.skipped] == ["notes.txt"]
    dead = (kg.settings.data_dir / "dead-letter" / "metrics.jsonl").read_text().splitlines()
    assert len(dead) == 9 and json.loads(dead[0])["where"] == "line 3"
    assert report.counts["nonFiniteSamples"] == 2
    rows = kg.cypher("MATCH (s:Entity) WHERE 'MetricSeries' IN s.types RETURN s.metricName, "
                     "s.sampleCount, s.minValue, s.maxValue, s.lastValue, s.unit, "
                     "s.resolution ORDER BY s.metricName").rows
    # NaN and +Inf are stored samples but stay out of the summary statistics
    assert rows == [["q", 2, 1.5, 5.0, 5.0, "ms", "unresolved"],
                    ["up", 4, 0.0, 1.0, 0.0, None, "unresolved"]]
    assert report.counts["unresolvedSeries"] == 2 and report.notes


def test_a_csv_missing_a_column_and_oversized_labels_are_rejected(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    """Rejected with their line, never skipped as "not metrics": a long CSV without its
    value column, and a series whose label is over max_value_bytes."""
    no_value = tmp_path / "no-value.csv"
    no_value.write_text("timestamp,metric,labels\n2026-01-01T00:00:00Z,q,job=b\n")
    big = tmp_path / "big.prom"
    big.write_text(f'up{{job="{"j" * (65 * 1024)}"}} 1 1767225600000\n'
                   'up{job="a"} 1 1767225600000\n')
    report = run_ingest(kg, "metrics", [Input.file(no_value), Input.file(big)], scope=SCOPE)
    got = {(Path(r.file).name, r.where): r.reason for r in report.rejected}
    assert set(got) == {("no-value.csv", "line 1"), ("big.prom", "line 1")}
    assert "missing column(s) value" in got[("no-value.csv", "line 1")]
    assert "max_value_bytes" in got[("big.prom", "line 1")]
    assert report.skipped == []
    assert kg.cypher("MATCH (s:Entity) WHERE 'MetricSeries' IN s.types "
                     "RETURN s.metricName, s.sampleCount").rows == [["up", 1]]


def test_dry_run_writes_nothing(kg: KnowledgeGraph) -> None:
    services(kg, SCOPE, ["cart", "checkout"])
    report = run_ingest(kg, "metrics", [Input.of_bytes("m.prom", exposition(synthetic())
                                                       .encode())], scope=SCOPE, dry_run=True)
    # two series + observes, one anomaly + detectedIn + aboutEntity
    assert report.created == 7 and report.counts["anomalies"] == 1
    assert not (kg.settings.data_dir / "timeseries").exists()
    assert kg.cypher("MATCH (s:Entity) WHERE 'MetricSeries' IN s.types RETURN s.iri").rows == []


# -- without a graph: the store and the detector -------------------------------------------------

def test_store_dedupes_reads_by_time_and_compacts(tmp_path: Path) -> None:
    store = TimeSeriesStore.open(tmp_path)
    a, b = series_id("s", "m", {"x": "1"}), series_id("s", "m", {"x": "2"})
    assert a == series_id("s", "m", {"x": "1"}) and a != b and len(a) == 32
    assert series_id("s", "m", {}) == "2bc7878f0bce7ff1ddefe076055fd6a7"  # stable forever
    day = 86_400_000
    store.append([a, a, b], np.array([0, day, 5]), np.array([1.0, 2.0, 3.0]))
    store.append([a], np.array([day]), np.array([9.0]))  # a correction: the newer part wins
    assert len(store.parts()) == 3
    got = store.read([a]).split()[a]
    assert got[0].tolist() == [0, day] and got[1].tolist() == [1.0, 9.0]
    window = store.read([a, b], start=1, end=day).split()
    assert {k: v.tolist() for k, (_, v) in window.items()} == {a: [9.0], b: [3.0]}
    assert store.compact() == 2 and len(store.parts()) == 2  # day 1's two parts merged
    assert sorted(store.read(None).value.tolist()) == [1.0, 3.0, 9.0]
    assert TimeSeriesStore.open(tmp_path, read_only=True).head_seq == store.head_seq


def test_detector_rates_of_a_counter_and_config_errors() -> None:
    from ingest.anomaly import counter_rates

    state = DetectorState()
    ts = np.arange(100) * 10_000
    raw = np.cumsum(np.full(100, 50.0))  # 5/s
    raw[60:] += 5000  # a burst
    raw[80:] -= raw[80] - 10  # a reset
    t, rates = counter_rates(state, ts, raw)
    assert rates[0] == 5.0 and rates[59] == 505.0 and rates[79] == 1.0  # rates[i]: sample i+1
    runs = detect(state, t, rates, DetectorConfig(window=30, min_baseline=10))
    assert [(r.start_ms, r.direction) for r in runs] == [(600_000, 1), (800_000, -1)]
    with pytest.raises(ValueError, match="min_baseline"):
        DetectorConfig.from_options({"window": 5, "min_baseline": 10})
