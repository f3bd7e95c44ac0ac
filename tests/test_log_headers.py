"""Log headers and times: the timestamp catalogue, time-format patterns, header layouts
learned from a file's own lines (generated corpus), lines kept when their time does not
read, and the time-format option through ingest on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import log_headers
from ingest import IngestError, run_ingest
from ingest.base import Input
from ingest.logparse.clock import Clock, zone
from ingest.logparse.header import LearnedFormat, learn, plain_format
from ingest.logparse.lines import HeaderFormat
from ingest.logparse.stamps import CATALOGUE, PatternError, time_format
from ingest.logs import parse_options
from kg.graph import KnowledgeGraph

REF = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def clock(**kw: object) -> Clock:
    return Clock(zone("UTC"), REF, **kw)  # type: ignore[arg-type]


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


# -- stamps and patterns ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2015-10-18 18:01:47,978", utc(2015, 10, 18, 18, 1, 47) + 0.978),
    ("2024-05-01T10:00:00.5+02:00", utc(2024, 5, 1, 8, 0, 0) + 0.5),
    ("10/Oct/2000:13:55:36 -0700", utc(2000, 10, 10, 20, 55, 36)),
    ("Sun Dec 04 04:47:44 2005", utc(2005, 12, 4, 4, 47, 44)),
    ("20171223-22:15:29:606", utc(2017, 12, 23, 22, 15, 29) + 0.606),
    ("2005-06-03-15.42.50.675872", utc(2005, 6, 3, 15, 42, 50) + 0.675872),
    ("Oct 18, 2015 6:01:47 PM", utc(2015, 10, 18, 18, 1, 47)),
    ("1117838570", utc(2005, 6, 3, 22, 42, 50)),
    ("1117838570123", utc(2005, 6, 3, 22, 42, 50) + 0.123),
    ("Jun 14 15:16:01", utc(2025, 6, 14, 15, 16, 1)),  # no year: the reference's, or before
    ("16:49:06", utc(2025, 12, 31, 16, 49, 6)),  # no date: the reference day, or the one before
])
def test_catalogue_reads_stamps_of_many_layouts(text: str, expected: float) -> None:
    assert clock().stamp(text) == pytest.approx(expected, abs=1e-6)


def test_time_format_patterns_java_and_strftime() -> None:
    java = time_format("dd|MM|yyyy HH-mm-ss.SSS")
    c = clock(layout=java)
    assert c.stamp("18|10|2015 18-01-47.978") == pytest.approx(utc(2015, 10, 18, 18, 1, 47) + .978)
    strf = time_format("%d %B %Y, %I:%M:%S %p %z")
    assert clock(layout=strf).stamp("18 October 2015, 06:01:47 PM +0200") == \
        utc(2015, 10, 18, 16, 1, 47)
    with pytest.raises(PatternError, match="pattern letter 'QQ'"):
        time_format("yyyy-QQ")
    with pytest.raises(PatternError, match="12-hour"):
        time_format("yyyy-MM-dd hh:mm:ss")
    with pytest.raises(PatternError, match="%Q"):
        time_format("%Y-%Q")
    with pytest.raises(PatternError, match="neither a date nor a time"):
        time_format("yyyy")
    assert len({layout.name for layout in CATALOGUE}) == len(CATALOGUE) >= 40


# -- learned headers ------------------------------------------------------------------------------

def test_generated_corpus_headers_and_times_are_detected() -> None:
    scores = {s.name: s for s in log_headers.run(verbose=False)}
    assert len(scores) == len(log_headers.CASES) >= 40
    layout = sum(s.layout for s in scores.values())
    timed = sum(s.time for s in scores.values())
    assert layout >= 40 and timed >= 43, (layout, timed)
    for name in ("Apache error log ([ctime] [level])", "[MM.dd HH:mm:ss] program - msg",
                 "pipe-delimited (yyyyMMdd-HH:mm:ss:SSS|comp|pid|msg)",
                 "Windows CBS-like (date time, Level padded Component padded)",
                 "log4j (date, level, [thread], class:)"):
        assert scores[name].layout and scores[name].time, scores[name]


def test_learned_fields_continuation_lines_and_bad_times_are_kept() -> None:
    lines = [f"2015-10-18 18:01:{s:02d},978 INFO [main] org.apache.App: Created job {s}"
             for s in range(20)]
    lines[5] = "\tat org.apache.App.run(App.java:12)"
    lines[7] = "2015-02-30 18:01:07,978 ERROR [main] org.apache.App: Created job 7"
    fmt = plain_format(lines, clock(), [("app", "component"), ("thread", "thread")])
    assert isinstance(fmt, LearnedFormat)
    assert fmt.layout.describe() == ("<Time yyyy-MM-dd HH:mm:ss[,SSS][ z][XXX]> <Level> "
                                     "[<Thread>] [<Component>:] <Content>")
    first = fmt.parse(lines[0])
    assert (first.time, first.level, first.content, first.emitter) == (
        utc(2015, 10, 18, 18, 1, 0) + 0.978, "info", "Created job 0",
        (("app", "org.apache.App"), ("thread", "main")))
    trace = fmt.parse(lines[5])
    assert (trace.time, trace.content, trace.time_error) == (
        None, "at org.apache.App.run(App.java:12)", None)
    bad = fmt.parse(lines[7])  # kept: header split, time flagged
    assert bad.time is None and "not a valid time" in (bad.time_error or "")
    assert (bad.level, bad.content) == ("error", "Created job 7")
    assert "19 of the first 20 lines" in fmt.describe()


def test_no_header_learned_from_free_text() -> None:
    assert learn(["hello world", "nothing to see here", "just words"], clock(),
                 CATALOGUE) is None


def test_header_format_keeps_lines_whose_time_does_not_read() -> None:
    fmt = HeaderFormat(clock(), "<Date> <Time> <Level> <Content>", [])
    line = fmt.parse("18|10|2015 18-01-47 INFO started")
    assert line.time is None and "time-format" in (line.time_error or "")
    assert line.content == "started"
    given = HeaderFormat(clock(layout=time_format("dd|MM|yyyy HH-mm-ss")),
                         "<Date> <Time> <Level> <Content>", [])
    assert given.parse("18|10|2015 18-01-47 INFO started").time == utc(2015, 10, 18, 18, 1, 47)


# -- options and ingest ---------------------------------------------------------------------------

def test_time_format_option_spellings_and_errors() -> None:
    assert parse_options({"time-format": "%Y-%m-%d %H:%M:%S"}).time_format == \
        "%Y-%m-%d %H:%M:%S"
    assert parse_options({"time_format": "HH:mm"}).time_format == "HH:mm"
    with pytest.raises(IngestError, match="time_format: pattern letter 'QQ'"):
        parse_options({"time-format": "yyyy-QQ"})


def _odd_stamped(path: Path) -> Path:
    lines = [f"18|10|2015 18-{m:02d}-07 INFO worker {m} started on node-{m % 3}"
             for m in range(40)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unknown_layout_is_kept_then_read_with_time_format(kg: KnowledgeGraph,
                                                           tmp_path: Path) -> None:
    path = _odd_stamped(tmp_path / "odd.log")
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    plain = run_ingest(kg, "logs", [Input.file(path)], scope="test/hdr", as_of=as_of,
                       options={"stream": "odd"})
    assert plain.rejected == [] and plain.counts["lines"] == 40
    assert plain.counts["linesWithoutTime"] == 40  # no layout known: kept, counted
    assert any("40 of 40 lines without a parsed time" in n for n in plain.notes)

    given = run_ingest(kg, "logs", [Input.file(path)], scope="test/hdr2", as_of=as_of,
                       options={"time-format": "dd|MM|yyyy HH-mm-ss", "stream": "odd2"})
    assert given.rejected == [] and given.counts["linesWithoutTime"] == 0
    note = next(n for n in given.notes if n.startswith(str(path)))
    assert "time format 'dd|MM|yyyy HH-mm-ss'" in note and "<Level>" in note, note
    first, last = kg.cypher(
        "MATCH (e:Entity) WHERE e.eventKind = 'template-count' AND e.startTime < $t "
        "RETURN min(e.startTime), max(e.startTime)",
        {"t": datetime(2020, 1, 1, tzinfo=UTC)}).rows[0]  # the first ingest's are in 2026
    assert (first, last) == (datetime(2015, 10, 18, 18, 0, tzinfo=UTC),
                             datetime(2015, 10, 18, 18, 39, tzinfo=UTC))
    texts = {r[0] for r in kg.cypher("MATCH (t:Entity) WHERE 'LogTemplate' IN t.types "
                                     "RETURN t.templateText").rows}
    assert "worker <*> started on <*>" in texts  # the header split off the message
