"""Log line formats: syslog, JSON lines and plain lines; each line becomes a :class:`LogLine`.

A format reads one text line into its time (UTC epoch seconds), level, message (the text
after the header, which is what templates are mined from) and the emitter's labels, or
raises :class:`BadLine` with the reason. A line is never bad for its time alone: a stamp
that does not read keeps the line with ``time`` None and the reason in ``time_error``. The
formats (docs/ingest/logs.md has them exactly):

``syslog``  RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``) or RFC 3164
            (``[<PRI>]Mmm dd HH:mm:ss HOST TAG[PID]: MSG``); a line that is neither is bad.
``json``    one JSON object per line with a message, a timestamp and optional level and
            label fields (dotted paths into nested objects); invalid JSON or a missing
            message make the line bad.
``plain``   free text. Its header layout is learned per file (:mod:`.header`); when none
            is, :class:`PlainFormat` splits each line by generic layouts: (1) a leading
            timestamp (ISO 8601, ``yy/MM/dd HH:mm:ss``, ``yyMMdd HHmmss``,
            ``MM-dd HH:mm:ss.SSS``), then up to three numeric or ``-`` fields (pid, tid),
            an optional level word, an optional ``[thread]``, and a ``component:`` or a
            `` - `` separator; (2) otherwise, when one of the first ten fields is an
            upper-case level word and every field before it looks like a header field
            (has a digit, is ``-`` or is an upper-case word), everything up to the level;
            (3) otherwise, when the first field looks like a header field and one of the
            first eight is a Unix epoch time (10 or 13 digits, 2000-2100), everything up
            to that field. A line matching neither is all message.
``header``  a Loghub-style layout given per input (``<Date> <Time> <Level> <Component>:
            <Content>``); a line that does not match it is bad.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.logparse.clock import BadTime, Clock

LEVELS = {
    "TRACE": "debug", "DEBUG": "debug", "FINE": "debug", "FINER": "debug", "FINEST": "debug",
    "VERBOSE": "debug", "INFO": "info", "NOTICE": "info", "CONFIG": "info",
    "WARN": "warning", "WARNING": "warning", "ERROR": "error", "ERR": "error",
    "SEVERE": "error", "CRITICAL": "critical", "CRIT": "critical", "FATAL": "critical",
    "ALERT": "critical", "EMERG": "critical", "EMERGENCY": "critical", "PANIC": "critical",
    "NOTE": "info", "INFORMATION": "info", "DBG": "debug", "WRN": "warning",
}
SHORT_LEVELS = {"V": "debug", "D": "debug", "I": "info", "W": "warning", "E": "error",
                "F": "critical", "A": "critical"}  # logcat; only after numeric pid/tid fields
SEVERITY = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}
SYSLOG_SEVERITY = ("critical", "critical", "critical", "error", "warning", "info", "info",
                   "debug")  # PRI % 8: emerg alert crit err warning notice info debug

Emitter = tuple[tuple[str, str], ...]  # (label, value) pairs, in the mapping's order


class BadLine(ValueError):
    """A line that cannot be read in its input's format; the message says why."""


@dataclass(slots=True)
class LogLine:
    time: float | None  # UTC epoch seconds; None: the line has no timestamp
    level: str | None  # debug | info | warning | error | critical
    content: str
    emitter: Emitter
    time_error: str | None = None  # why a time the line has could not be read (kept)


class LineFormat(Protocol):
    name: str

    def parse(self, line: str) -> LogLine: ...

    def describe(self) -> str: ...


def level_of(word: str | None) -> str | None:
    if not word:
        return None
    return LEVELS.get(word.upper()) or SHORT_LEVELS.get(word.upper())


def _emitter(fields: Mapping[str, Any], labels_from: Sequence[tuple[str, str]]) -> Emitter:
    out = []
    for label, name in labels_from:
        value = fields.get(name)
        if value:
            out.append((label, str(value)))
    return tuple(out)


def _stamp(clock: Clock, text: str) -> tuple[float | None, str | None]:
    """(time, None), or (None, why) for a stamp that does not read: the line is kept."""
    try:
        return clock.stamp(text), None
    except BadTime as exc:
        return None, str(exc)


# -- syslog ----------------------------------------------------------------------------------

_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+)"
    r" (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: \ufeff?(?P<msg>.*))?")
_RFC3164 = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) +"
    r"(?:(?P<app>[^\s:\[][^:\[]{0,47}?)(?:\[(?P<pid>[^\]]*)\])?: ?)?(?P<msg>.*)")


class SyslogFormat:
    """RFC 5424 and RFC 3164 lines; fields ``host``, ``app``, ``pid``, ``msgid``."""

    name = "syslog"

    def __init__(self, clock: Clock, labels_from: Sequence[tuple[str, str]]) -> None:
        self.clock = clock
        self.labels_from = labels_from

    def parse(self, line: str) -> LogLine:
        m = _RFC5424.fullmatch(line) or _RFC3164.fullmatch(line)
        if m is None:
            raise BadLine("not a syslog line (RFC 5424 or RFC 3164)")
        g = m.groupdict()
        ts = g["ts"]
        time, problem = (None, None) if ts == "-" else _stamp(self.clock, ts)
        pri = g["pri"]
        level = SYSLOG_SEVERITY[int(pri) % 8] if pri is not None else None
        return LogLine(time, level, (g["msg"] or "").strip(), _emitter(g, self.labels_from),
                       problem)

    def describe(self) -> str:
        return "syslog (RFC 5424 / RFC 3164)"


# -- JSON lines ------------------------------------------------------------------------------

MESSAGE_FIELDS = ("message", "msg", "log", "MESSAGE", "text")
TIME_FIELDS = ("timestamp", "@timestamp", "time", "ts", "datetime", "date", "t")
LEVEL_FIELDS = ("level", "severity", "lvl", "loglevel", "log.level", "levelname")
JSON_LABELS: dict[str, tuple[str, ...]] = {
    "pod": ("pod", "kubernetes.pod_name", "k8s.pod.name", "kubernetes.pod.name"),
    "namespace": ("namespace", "kubernetes.namespace_name", "k8s.namespace.name",
                  "kubernetes.namespace"),
    "node": ("node", "kubernetes.host", "k8s.node.name", "kubernetes.node.name"),
    "deployment": ("deployment", "k8s.deployment.name"),
    "cluster": ("cluster", "k8s.cluster.name"),
    "service": ("service", "service.name", "service_name"),
    "host": ("host", "hostname", "host.name", "host.hostname"),
}


def json_path(obj: Mapping[str, Any], path: str) -> Any:
    """``obj[path]`` when that key exists (flat dotted keys), else the nested lookup."""
    if path in obj:
        return obj[path]
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


class JsonFormat:
    """One JSON object per line; fields are dotted paths (see the module doc)."""

    name = "json"

    def __init__(self, clock: Clock, labels_from: Mapping[str, Sequence[str]], *,
                 message: Sequence[str] = MESSAGE_FIELDS, time: Sequence[str] = TIME_FIELDS,
                 level: Sequence[str] = LEVEL_FIELDS) -> None:
        self.clock = clock
        self.labels_from = labels_from
        self.message, self.time, self.level = message, time, level

    def parse(self, line: str) -> LogLine:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadLine(f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(obj, dict):
            raise BadLine("not a JSON object")
        msg = self._first(obj, self.message)
        if msg is None:
            raise BadLine(f"no message field (one of {', '.join(self.message)})")
        if not isinstance(msg, str):
            msg = json.dumps(msg, ensure_ascii=False, sort_keys=True)
        raw_time = self._first(obj, self.time)
        time, problem = (None, f"no timestamp field (one of {', '.join(self.time)})") \
            if raw_time is None else self._time(raw_time)
        level = self._first(obj, self.level)
        labels = []
        for label, paths in self.labels_from.items():
            value = self._first(obj, paths)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                labels.append((label, str(value)))
        return LogLine(time, level_of(str(level)) if level else None, msg.strip(),
                       tuple(labels), problem)

    def describe(self) -> str:
        fmt = f", time format {self.clock.layout.pattern!r}" if self.clock.layout else ""
        return f"JSON lines (time from {', '.join(self.time)}{fmt})"

    @staticmethod
    def _first(obj: Mapping[str, Any], paths: Sequence[str]) -> Any:
        for p in paths:
            v = json_path(obj, p)
            if v is not None:
                return v
        return None

    def _time(self, raw: Any) -> tuple[float | None, str | None]:
        try:
            if isinstance(raw, bool):
                raise BadTime(f"timestamp {raw!r} is not a time")
            if isinstance(raw, int | float):
                return self.clock.epoch(raw), None
            if isinstance(raw, str):
                return self.clock.stamp(raw.strip()), None
            raise BadTime(f"timestamp {raw!r} is not a string or a number")
        except BadTime as exc:
            return None, str(exc)


# -- plain lines with a generic header --------------------------------------------------------

_TS_HEAD = re.compile(
    r"\[?(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
    r"|\d\d(?:\d\d)?/\d\d/\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?"
    r"|\d{6} \d{6}"
    r"|\d\d-\d\d \d\d:\d\d:\d\d(?:[.,]\d+)?)\]?(?=\s|$)")
_COMPONENT = re.compile(r"[\w.$@/#-]+(?:\[\d+\])?:")
_SKIP = [re.compile(r"\s*(?:\S+\s+){" + str(n) + "}") for n in range(12)]


def _bracket_end(s: str) -> int:
    """Index of the ``]`` closing the ``[`` at s[0] (nesting allowed), or -1."""
    end = s.find("]")
    if end < 0 or s.find("[", 1, end) < 0:  # the common case: no nesting
        return end
    depth = 0
    for i, c in enumerate(s):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    return -1


_DIGIT = re.compile(r"\d")


def _header_like(tok: str) -> bool:
    return (tok == "-" or _DIGIT.search(tok) is not None
            or (tok.replace("_", "").isalpha() and tok.isupper()))


class PlainFormat:
    """Free text with the generic header layouts of the module doc; fields ``component``,
    ``thread``, ``pid``."""

    name = "plain"

    def __init__(self, clock: Clock, labels_from: Sequence[tuple[str, str]]) -> None:
        self.clock = clock
        self.labels_from = labels_from

    def parse(self, line: str) -> LogLine:
        m = _TS_HEAD.match(line)
        if m:
            time, problem = _stamp(self.clock, m.group("ts"))
            parsed = self._after_stamp(time, line[m.end():])
            parsed.time_error = problem
            return parsed
        anchored = self._level_anchor(line) or self._epoch_anchor(line)
        if anchored is not None:
            return anchored
        return LogLine(None, None, line.strip(), ())

    def describe(self) -> str:
        return "plain, header split per line (no layout learned from the first lines)"

    def _after_stamp(self, time: float | None, rest: str) -> LogLine:
        fields: dict[str, str] = {}
        s = rest.lstrip()
        numeric = 0
        for _ in range(3):  # pid, tid, separators
            tok, _, after = s.partition(" ")
            if tok == "-":
                s = after.lstrip()
            elif tok.isdigit():
                numeric += 1
                fields.setdefault("pid", tok)
                s = after.lstrip()
            else:
                break
        tok, _, after = s.partition(" ")
        word = tok.strip("[]:")
        level = LEVELS.get(word) or (SHORT_LEVELS.get(word) if numeric else None)
        if level:
            s = after.lstrip()
        if s[:1] == "[":
            end = _bracket_end(s)
            if end > 0:
                fields["thread"] = s[1:end]
                s = s[end + 1:].lstrip()
        if s[:2] == "- ":
            s = s[2:]
        elif level or "thread" in fields:
            c = _COMPONENT.match(s)
            if c and (c.end() == len(s) or s[c.end()] == " "):
                fields["component"] = s[:c.end() - 1]
                s = s[c.end():]
        emitter = _emitter(fields, self.labels_from) if self.labels_from else ()
        return LogLine(time, level, s.strip(), emitter)

    def _level_anchor(self, line: str) -> LogLine | None:
        toks = line.split(None, 10)
        for i in range(1, min(len(toks) - 1, 10)):
            level = LEVELS.get(toks[i])
            if level is None:
                continue
            if not all(_header_like(t) for t in toks[:i]):
                return None
            time = None
            for t in toks[:i]:
                if _DIGIT.search(t) and ("-" in t or t.isdigit()):
                    try:
                        time = self.clock.stamp(t)
                        break
                    except BadTime:
                        continue
            m = _SKIP[i + 1].match(line)
            content = line[m.end():] if m else ""
            return LogLine(time, level, content.strip(), ())
        return None

    def _epoch_anchor(self, line: str) -> LogLine | None:
        toks = line.split(None, 8)
        if len(toks) < 3 or not _header_like(toks[0]):
            return None
        for i in range(len(toks) - 1):
            t = toks[i]
            if len(t) in (10, 13) and t.isdigit():
                try:
                    time = self.clock.epoch(int(t))
                except BadTime:
                    continue
                m = _SKIP[i + 1].match(line)
                content = line[m.end():] if m else ""
                return LogLine(time, None, content.strip(), ())
        return None


# -- a Loghub-style header layout --------------------------------------------------------------

class HeaderFormat:
    """Lines in a layout such as ``<Date> <Time> <Pid> <Level> <Component>: <Content>``
    (the log_format of Loghub/logparser: ``<Field>`` matches any text, spaces match runs of
    white space, other text is a regular expression). ``<Content>`` is required; the time
    comes from ``<Timestamp>``, or ``<Month> <Date> <Time>``, ``<Date> <Time>`` or ``<Time>``;
    the level from ``<Level>``. Every field can be a label source."""

    name = "header"

    def __init__(self, clock: Clock, layout: str, labels_from: Sequence[tuple[str, str]]
                 ) -> None:
        self.clock = clock
        self.layout = layout
        self.regex = compile_layout(layout)
        self.labels_from = labels_from
        names = set(self.regex.groupindex)
        self.time_fields = next(
            (fs for fs in (("Timestamp",), ("Month", "Date", "Time"), ("Date", "Time"),
                           ("Time",)) if names.issuperset(fs)), ())

    def parse(self, line: str) -> LogLine:
        m = self.regex.match(line)
        if m is None:
            raise BadLine(f"does not match the header layout {self.layout!r}")
        g = m.groupdict()
        time, problem = None, None
        if self.time_fields:
            text = " ".join((g[f] or "").strip() for f in self.time_fields)
            time, problem = _stamp(self.clock, text)
        return LogLine(time, level_of((g.get("Level") or "").strip()),
                       (g.get("Content") or "").strip(), _emitter(g, self.labels_from),
                       problem)

    def describe(self) -> str:
        fmt = f", time format {self.clock.layout.pattern!r}" if self.clock.layout else ""
        return f"header {self.layout!r}{fmt}"


def compile_layout(layout: str) -> re.Pattern[str]:
    """The regular expression of a Loghub-style layout; ValueError says what is wrong."""
    parts = re.split(r"(<[^<>]+>)", layout)
    out = []
    names = []
    for k, part in enumerate(parts):
        if k % 2 == 0:
            out.append(re.sub(r" +", r"\\s+", part))
        else:
            name = part[1:-1]
            if not name.isidentifier() or name in names:
                raise ValueError(f"header field {part!r} must be a unique name")
            names.append(name)
            out.append(f"(?P<{name}>.*?)")
    if "Content" not in names:
        raise ValueError("a header layout needs a <Content> field")
    try:
        return re.compile("^" + "".join(out) + "$")
    except re.error as exc:
        raise ValueError(f"header layout {layout!r} is not valid: {exc}") from exc


def detect(sample: Sequence[str]) -> str:
    """The format of an input from its first non-empty lines: json, syslog or plain."""
    lines = [s for s in sample if s.strip()]
    if not lines:
        return "plain"
    if sum(s.lstrip().startswith("{") for s in lines) >= 0.9 * len(lines):
        return "json"
    syslog = sum(bool(_RFC5424.fullmatch(s) or _RFC3164.fullmatch(s)) for s in lines)
    return "syslog" if syslog >= 0.6 * len(lines) else "plain"
