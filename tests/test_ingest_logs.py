"""Logs ingest on every backend: Loghub syslog and plain lines, JSON lines with Kubernetes
labels, template versions, bursts, bad lines, idempotent re-ingest, the miner state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import IngestError, run_ingest
from ingest.base import Input
from ingest.logparse.clock import Clock, zone
from ingest.logparse.lines import BadLine, HeaderFormat, PlainFormat, SyslogFormat, detect
from ingest.logparse.miner import MinerConfig, TemplateMiner, mine
from ingest.logs import miner_path
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import SHARED_DATA

LOGHUB = SHARED_DATA / "loghub2k"
SCOPE = "test/lab"
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def rows(kg: KnowledgeGraph, query: str, **params: object) -> list[list[object]]:
    return kg.cypher(query, dict(params)).rows


def events(kg: KnowledgeGraph, kind: str) -> int:
    return rows(kg, "MATCH (e:Entity) WHERE 'LogEvent' IN e.types AND e.eventKind = $k "
                "RETURN count(e)", k=kind)[0][0]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- Loghub: syslog resolved to the host, counts, re-ingest ---------------------------------------

def test_linux_syslog_counts_resolve_to_host_and_reingest_changes_nothing(
        kg: KnowledgeGraph) -> None:
    host = mint_iri(SCOPE, "ComputeNode", "combo")
    kg.write(FactBatch.of("test/topology", [Entity(host, "ComputeNode", {"name": "combo"})]))
    linux = Input.file(LOGHUB / "Linux" / "Linux_2k.log")
    report = run_ingest(kg, "logs", [linux], scope=SCOPE, as_of=AS_OF, options={"year": 2005})
    assert report.rejected == []
    assert report.counts["lines"] == 2000
    assert report.counts["emittersResolved"] == 1 and report.counts["emittersUnresolved"] == 0
    n_counts = report.counts["templateCounts"]
    assert 100 < n_counts < 2000  # aggregated: far fewer events than lines
    total, linked = rows(kg, "MATCH (e:Entity)-[r:aboutEntity]->(h:Entity {iri: $h}) "
                         "WHERE e.eventKind = 'template-count' "
                         "RETURN sum(e.count), count(e)", h=host)[0]
    assert (int(total), linked) == (2000, n_counts)
    assert {r[0] for r in rows(kg, "MATCH (e:Entity)-[r:aboutEntity]->(h:Entity) "
                                   "RETURN r.resolution")} == {"exact"}
    # one template, its lines counted per minute; the first line's window and year
    tpl = rows(kg, "MATCH (t:Entity) WHERE 'LogTemplate' IN t.types AND t.templateText = $t "
               "RETURN t.iri, t.templateVersion",
               t="session opened for user <*> by (uid=<*>)")
    assert len(tpl) == 1 and tpl[0][1] == 1
    per = rows(kg, "MATCH (e:Entity)-[:hasTemplate]->(t:Entity {iri: $t}) "
               "WHERE e.eventKind = 'template-count' RETURN sum(e.count)", t=tpl[0][0])[0]
    assert int(per[0]) == 122  # Loghub E102 (E103, "by LOGIN(uid=0)", is its own)
    first = rows(kg, "MATCH (e:Entity) WHERE e.eventKind = 'template-count' "
                 "RETURN min(e.startTime), max(e.endTime)")[0]
    assert first[0] == datetime(2005, 6, 14, 15, 16, tzinfo=UTC)
    assert (first[1] - first[0]).days > 30
    assert events(kg, "new-template") == report.counts["templatesCreated"] > 50

    again = run_ingest(kg, "logs", [linux], scope=SCOPE, as_of=AS_OF, options={"year": 2005})
    assert (again.created, again.updated, again.rejected) == (0, 0, [])
    assert again.unchanged > 0 and again.counts["templatesCreated"] == 0
    assert rows(kg, "MATCH (e:Entity)-[:aboutEntity]->(h:Entity {iri: $h}) "
                "WHERE e.eventKind = 'template-count' RETURN sum(e.count)", h=host)[0][0] == 2000


def test_generic_headers_of_loghub_plain_files_and_unresolved_emitters(
        kg: KnowledgeGraph) -> None:
    inputs = [Input.of_bytes(f"{s}.log", b"".join(
        (LOGHUB / s / f"{s}_2k.log").read_bytes().splitlines(keepends=True)[:1000]))
        for s in ("HDFS", "BGL")]  # the first 1000 lines of each keep the test fast
    report = run_ingest(kg, "logs", inputs, scope=SCOPE, as_of=AS_OF)
    assert report.rejected == [] and report.counts["lines"] == 2000
    assert report.counts["linesWithoutTime"] == 0  # every header was found
    # no labels and no topology: kept as unresolved, counted, never dropped
    assert report.counts["linesUnresolved"] == 2000
    unresolved = rows(kg, "MATCH (e:Entity) WHERE e.eventKind = 'template-count' "
                      "AND e.resolution = 'unresolved' RETURN sum(e.count)")[0][0]
    assert int(unresolved) == 2000
    texts = {r[0] for r in rows(kg, "MATCH (t:Entity) WHERE 'LogTemplate' IN t.types "
                                    "RETURN t.templateText")}
    assert "PacketResponder <*> for block <*> terminating" in texts  # HDFS, header split off
    assert "instruction cache parity error corrected" in texts  # BGL, up to the level
    bgl = rows(kg, "MATCH (e:Entity) WHERE e.eventKind = 'template-count' "
               "AND e.startTime < $t RETURN count(e)", t=datetime(2005, 7, 1, tzinfo=UTC))
    assert bgl[0][0] > 0  # BGL's epoch stamps read as 2005


# -- JSON lines: Kubernetes labels, bad lines, dead letter ---------------------------------------

def test_json_lines_resolve_pods_and_bad_lines_are_rejected_with_line(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    pod = mint_iri(SCOPE, "Pod", "shop/cart-5d8f9c7b6-x2xkq")
    kg.write(FactBatch.of("test/topology", [Entity(pod, "Pod", {"name": "cart-5d8f9c7b6-x2xkq"})]))
    k8s = {"pod_name": "cart-5d8f9c7b6-x2xkq", "namespace_name": "shop"}
    good = [json.dumps({"time": f"2026-01-01T10:00:{s:02d}Z", "log": f"GET /cart/{s} 200 in "
                        f"{s} ms", "level": "info", "kubernetes": k8s}) for s in range(30)]
    good.append(json.dumps({"ts": 1767261600.5, "msg": "cache warm", "pod": "ghost-0",
                            "namespace": "shop"}))
    lines = [*good[:10], "{not json", *good[10:20], json.dumps({"msg": "no time here"}),
             json.dumps({"time": "2026-13-45T99:00:00Z", "msg": "bad time"}), "[1, 2]",
             *good[20:]]
    path = write_lines(tmp_path / "cart.jsonl", lines)
    report = run_ingest(kg, "logs", [Input.file(path)], scope=SCOPE, as_of=AS_OF)
    where = {r.where: r.reason for r in report.rejected}
    assert set(where) == {"line 11", "line 24"}  # lines 22, 23: kept, for their time only
    assert where["line 11"].startswith("invalid JSON")
    assert where["line 24"] == "not a JSON object"
    assert all(r.file == str(path) for r in report.rejected)
    dead = (kg.settings.data_dir / "dead-letter" / "logs.jsonl").read_text().splitlines()
    assert [json.loads(d)["where"] for d in dead] == ["line 11", "line 24"]
    assert report.counts["lines"] == 33
    assert (report.counts["linesWithoutTime"], report.counts["linesBadTime"]) == (2, 2)
    note = next(n for n in report.notes if n.startswith(str(path)))
    assert f"{path}:22: no timestamp" in note, note
    about = rows(kg, "MATCH (e:Entity)-[r:aboutEntity]->(p:Entity {iri: $p}) "
                 "WHERE e.eventKind = 'template-count' RETURN sum(e.count), r.resolution",
                 p=pod)
    assert int(about[0][0]) == 30 and about[0][1] == "exact"
    # the unknown pod: kept with its labels, marked, counted
    ghost = rows(kg, "MATCH (e:Entity) WHERE e.eventKind = 'template-count' "
                 "AND e.resolution = 'unresolved' AND e.labels IS NOT NULL "
                 "RETURN e.labels, e.count")
    assert ghost == [['{"namespace": "shop", "pod": "ghost-0"}', 1]]
    assert report.counts["emittersUnresolved"] == 2  # ghost-0 and the two label-less lines


def test_binary_undecodable_and_oversized_lines_are_rejected_with_their_line(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    """Nothing that is not a text line reaches the miner: binary data, bytes of another
    encoding and lines over max_value_bytes are rejected with their line; the rest lands."""
    good = b"2026-01-01T10:00:00Z INFO cache warm on node-1\n"
    path = tmp_path / "mixed.log"
    path.write_bytes(good + b"\x00\x01\x02\xff binary \x7fELF\n"  # line 2
                     + "2026-01-01T10:00:01Z WARN caf\u00e9 is slow\n".encode("latin-1")
                     + b"2026-01-01T10:00:02Z INFO " + b"x" * (65 * 1024) + b"\n"  # line 4
                     + good)
    report = run_ingest(kg, "logs", [Input.file(path)], scope=SCOPE, as_of=AS_OF)
    where = {r.where: r.reason for r in report.rejected}
    assert set(where) == {"line 2", "line 3", "line 4"}
    assert where["line 2"].startswith(("binary data", "not utf-8 text"))
    assert "byte 0xe9 at column 30" in where["line 3"] and "encoding" in where["line 3"]
    assert "max_value_bytes" in where["line 4"]
    assert report.counts["lines"] == 2 and report.counts["templatesCreated"] == 1
    dead = (kg.settings.data_dir / "dead-letter" / "logs.jsonl").read_text("utf-8")
    assert len(dead.splitlines()) == 3  # written as UTF-8 whatever the line held
    # garbage as a whole: every line rejected, no template mined
    noise = tmp_path / "noise.log"
    noise.write_bytes(bytes(range(256)) * 40)
    report = run_ingest(kg, "logs", [Input.file(noise)], scope=SCOPE, as_of=AS_OF)
    assert report.rejected and report.counts.get("templatesCreated", 0) == 0
    # latin-1 text, said so: read as what it is
    latin = tmp_path / "latin.log"
    latin.write_bytes("2026-01-01T10:00:01Z WARN caf\u00e9 is slow\n".encode("latin-1"))
    report = run_ingest(kg, "logs", [Input.file(latin)], scope=SCOPE, as_of=AS_OF,
                        options={"encoding": "latin-1"})
    assert report.rejected == []
    assert rows(kg, "MATCH (t:Entity) WHERE 'LogTemplate' IN t.types AND t.templateText "
                "CONTAINS 'caf\u00e9' RETURN count(t)")[0][0] == 1
    with pytest.raises(IngestError, match="unknown text encoding"):
        run_ingest(kg, "logs", [Input.file(latin)], scope=SCOPE, options={"encoding": "x"})


# -- template versions ---------------------------------------------------------------------------

def test_generalised_template_gets_a_new_version_linked_from_the_old(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    first = write_lines(tmp_path / "a.log", [
        f"2026-01-01 10:0{i}:00 INFO worker: nightly job started on worker alpha"
        for i in range(3)])
    second = write_lines(tmp_path / "b.log", [
        "2026-01-01 11:00:00 INFO worker: nightly job started on worker beta"])
    run_ingest(kg, "logs", [Input.file(first)], scope=SCOPE, as_of=AS_OF)
    report = run_ingest(kg, "logs", [Input.file(second)], scope=SCOPE, as_of=AS_OF)
    assert report.counts["templatesGeneralized"] == 1
    chain = rows(kg, "MATCH (a:Entity)-[:generalizedTo]->(b:Entity) RETURN a.templateText, "
                 "a.templateVersion, a.validTo, b.templateText, b.templateVersion")
    assert chain == [["nightly job started on worker alpha", 1,
                      datetime(2026, 1, 1, 11, 0, tzinfo=UTC),
                      "nightly job started on worker <*>", 2]]
    # the earlier counts keep pointing at version 1, the new ones at version 2
    linked = rows(kg, "MATCH (e:Entity)-[:hasTemplate]->(t:Entity) WHERE "
                  "e.eventKind = 'template-count' RETURN t.templateVersion, sum(e.count) "
                  "ORDER BY t.templateVersion")
    assert [[v, int(n)] for v, n in linked] == [[1, 3], [2, 1]]


# -- derived events ------------------------------------------------------------------------------

def test_error_burst_and_rare_template_events(kg: KnowledgeGraph, tmp_path: Path) -> None:
    lines = []
    for minute in range(20):
        lines += [f"2026-01-01 10:{minute:02d}:{s:02d} INFO api: request {s} served"
                  for s in range(50)]
        lines.append(f"2026-01-01 10:{minute:02d}:59 ERROR api: upstream timeout after 30s")
    lines += [f"2026-01-01 10:07:3{i} ERROR api: upstream timeout after 30s" for i in range(9)]
    lines += [f"2026-01-01 10:07:4{i} ERROR api: connection refused by db-{i}" for i in range(6)]
    lines.append("2026-01-01 10:08:00 WARN api: disk almost full on volume data")
    path = write_lines(tmp_path / "api.log", lines)
    report = run_ingest(kg, "logs", [Input.file(path)], scope=SCOPE, as_of=AS_OF,
                        options={"labels": {"service": "api"}})
    assert report.counts["errorBursts"] == 1 and report.counts["rareTemplates"] == 1
    burst = rows(kg, "MATCH (e:Entity) WHERE e.eventKind = 'error-burst' "
                 "RETURN e.count, e.startTime, e.logLevel, e.labels")
    assert burst == [[16, datetime(2026, 1, 1, 10, 7, tzinfo=UTC), "error",
                      '{"service": "api"}']]
    tpls = {r[0] for r in rows(kg, "MATCH (e:Entity)-[:hasTemplate]->(t:Entity) "
                                   "WHERE e.eventKind = 'error-burst' RETURN t.templateText")}
    assert tpls == {"upstream timeout after <*>", "connection refused by <*>"}
    rare = rows(kg, "MATCH (e:Entity)-[:hasTemplate]->(t:Entity) WHERE "
                "e.eventKind = 'rare-template' RETURN t.templateText, e.count")
    assert rare == [["disk almost full on volume data", 1]]


# -- the miner state, options, dry run -----------------------------------------------------------

def test_miner_state_is_versioned_json_and_settings_must_match(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    hdfs = Input.file(LOGHUB / "HDFS" / "HDFS_2k.log")
    dry = run_ingest(kg, "logs", [hdfs], scope=SCOPE, as_of=AS_OF, dry_run=True)
    assert dry.rejected == [] and dry.created > 0
    state = miner_path(kg.settings.data_dir, SCOPE)
    assert not state.exists()  # a dry run keeps nothing
    assert rows(kg, "MATCH (e:Entity) WHERE 'LogEvent' IN e.types RETURN count(e)") == [[0]]
    run_ingest(kg, "logs", [hdfs], scope=SCOPE, as_of=AS_OF)
    doc = json.loads(state.read_text())
    assert doc["formatVersion"] == 1 and doc["kind"] == "autocnc.log-miner"
    assert doc["config"] == MinerConfig().to_json()
    assert {"id", "tokens", "size", "version", "committed", "validFrom"} <= set(
        doc["clusters"][0])
    reloaded = TemplateMiner.load(state)
    assert reloaded.to_json() == doc
    with pytest.raises(IngestError, match="sim_th"):
        run_ingest(kg, "logs", [hdfs], scope=SCOPE, options={"sim_th": 0.5})
    with pytest.raises(IngestError, match="windw"):
        run_ingest(kg, "logs", [hdfs], scope=SCOPE, options={"windw": 5})


# -- units without a store -----------------------------------------------------------------------

def test_syslog_year_and_zone_rules() -> None:
    ref = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    fmt = SyslogFormat(Clock(zone("UTC"), ref), [("host", "host")])
    dec = fmt.parse("Dec 31 23:59:59 edge-1 kernel: eth0 link down")
    assert datetime.fromtimestamp(dec.time, UTC) == datetime(2025, 12, 31, 23, 59, 59,
                                                              tzinfo=UTC)
    assert dec.emitter == (("host", "edge-1"),) and dec.content == "eth0 link down"
    jan = fmt.parse("<11>Jan  2 08:00:00 edge-1 app[42]: boom")
    assert datetime.fromtimestamp(jan.time, UTC).year == 2026 and jan.level == "error"
    shanghai = SyslogFormat(Clock(zone("Asia/Shanghai"), ref, 2024), [])
    t = shanghai.parse("Jun  1 08:00:00 h app: x").time
    assert datetime.fromtimestamp(t, UTC) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    rfc5424 = fmt.parse("<165>1 2026-01-01T10:00:00.5+01:00 h app 1 ID47 - hello")
    assert rfc5424.time == datetime(2026, 1, 1, 9, 0, tzinfo=UTC).timestamp() + 0.5
    feb30 = fmt.parse("Feb 30 10:00:00 h app: x")  # kept, flagged: never rejected for its time
    assert feb30.time is None and "not a valid time" in (feb30.time_error or "")
    assert feb30.content == "x"
    with pytest.raises(BadLine, match="not a syslog line"):
        fmt.parse("hello world")


def test_generic_header_layouts() -> None:
    fmt = PlainFormat(Clock(zone("UTC"), AS_OF), [("app", "component")])
    line = fmt.parse("2015-10-18 18:01:47,978 INFO [main] org.apache.App: Created x")
    assert (line.level, line.content, line.emitter) == ("info", "Created x",
                                                        (("app", "org.apache.App"),))
    assert line.time == datetime(2015, 10, 18, 18, 1, 47, tzinfo=UTC).timestamp() + 0.978
    logcat = fmt.parse("03-17 16:13:38.811  1702  2395 D WindowManager: freeze")
    assert (logcat.level, logcat.content) == ("debug", "freeze")
    zk = fmt.parse("2015-07-29 17:41:44,747 - WARN  [Peer[myid=1]/0:0:2181:Elect@774] - "
                   "Notification: 3 time out")
    assert (zk.level, zk.content) == ("warning", "Notification: 3 time out")
    assert fmt.parse("plain text without a header").time is None
    assert detect(['{"a": 1}'] * 5) == "json"
    layout = HeaderFormat(Clock(zone("UTC"), AS_OF, 2005),
                          r"<Month> <Date> <Time> <Host> <Component>(\[<PID>\])?: <Content>",
                          [("host", "Host")])
    sshd = layout.parse("Jul  3 04:08:03 combo sshd(pam_unix)[19939]: check pass")
    assert (sshd.content, sshd.emitter) == ("check pass", (("host", "combo"),))
    assert sshd.time == datetime(2005, 7, 3, 4, 8, 3, tzinfo=UTC).timestamp()
    with pytest.raises(BadLine, match="header layout"):
        layout.parse("no header here")


def test_default_miner_groups_loghub_hdfs_and_zookeeper_well() -> None:
    from bench.log_templates import grouping_accuracy, load, messages

    for name in ("HDFS", "Zookeeper"):
        system = load(SHARED_DATA, name)
        pred = mine(messages(system, "auto"), MinerConfig())
        assert grouping_accuracy(system.original, pred) > 0.95, name
