"""Timestamp layouts: a broad catalogue, and user patterns (Java/Joda style or strftime).

A :class:`StampLayout` is a compiled pattern whose named groups are the parts of a time:
``y`` (2 or 4 digits), ``mo`` (month number) or ``mon`` (month name), ``d``, ``h``,
``mi``, ``s``, ``f`` (fraction of a second), ``ap`` (AM/PM), ``z`` (offset) or ``zn``
(zone name), ``ep`` (Unix epoch, told by magnitude), ``doy`` (day of the year).
:class:`ingest.logparse.clock.Clock` turns a match into UTC epoch seconds.

``CATALOGUE`` lists the layouts a file's header is searched for (``ingest.logparse.header``)
and a stamp given alone is tried against (JSON fields, ``header`` layouts). It follows the
grok / Logstash ``TIMESTAMP`` family (ISO8601, syslog, HTTPDATE, DATESTAMP_US/EU, RFC 822,
Catalina, …), Go's reference layouts (ANSIC, RubyDate, RFC 850/1123) and the stamps of
common log writers (log4j, Python logging, Android logcat, glog/klog, Windows CBS, nginx,
MySQL, DB2, ClickHouse). Its entries are written in Java pattern syntax (DateTimeFormatter:
``yyyy MM MMM dd HH hh mm ss SSS a EEE XXX z``, ``'literal'``, ``[optional]``) and compiled
*leniently*: a run of ``S`` takes 1–9 digits, a ``.`` or ``,`` before it takes either, white
space takes any run of blanks. The option ``time-format`` compiles a pattern strictly, in
Java syntax or, when it contains ``%``, strftime syntax (``%Y-%m-%d %H:%M:%S.%f``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WEEKDAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
WEEKDAYS_FULL = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
MONTH_ABBR = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
MONTH_FULL = ("January|February|March|April|May|June|July|August|September|October|"
              "November|December")
ZONE = r"(?P<z>Z|[+-]\d\d(?::?\d\d)?)"
_END = r"(?![0-9A-Za-z])"  # a stamp ends where a word would not go on


@dataclass(frozen=True)
class StampLayout:
    """A timestamp layout: its name, the pattern it was compiled from, its regex."""

    name: str
    pattern: str
    regex: re.Pattern[str]
    has_time: bool  # has a time of day (or is an epoch)

    def __repr__(self) -> str:
        return f"StampLayout({self.name!r}, {self.pattern!r})"


class PatternError(ValueError):
    """A time pattern that cannot be compiled; the message says which letter and why."""


# -- Java / Joda patterns ---------------------------------------------------------------------

_JAVA_TOKEN = re.compile(r"'(?:[^']|'')*'|\[|\]|([A-Za-z])\1*|\s+|.", re.S)


def _java_field(run: str, strict: bool) -> str:
    c, n = run[0], len(run)
    digits = r"\d{2}" if n >= 2 else r"\d{1,2}"
    match c:
        case "y" | "u":
            return r"(?P<y>\d{2})" if n == 2 else r"(?P<y>\d{4})"
        case "M" | "L":
            if n >= 4:
                return f"(?P<mon>(?i:{MONTH_FULL}|{MONTH_ABBR}))"
            if n == 3:
                return f"(?P<mon>(?i:{MONTH_ABBR}))"
            return f"(?P<mo>{digits})"
        case "d":
            return f"(?P<d>{digits})"
        case "D":
            return r"(?P<doy>\d{1,3})"
        case "H" | "k":
            return f"(?P<h>{digits})"
        case "h" | "K":
            return f"(?P<h>{digits})"
        case "m":
            return f"(?P<mi>{digits})"
        case "s":
            return f"(?P<s>{digits})"
        case "S":
            return f"(?P<f>\\d{{{n}}})" if strict else r"(?P<f>\d{1,9})"
        case "a":
            return r"(?P<ap>(?i:am|pm))"
        case "E":
            return f"(?i:{WEEKDAYS_FULL})" if n >= 4 else f"(?i:{WEEKDAYS})"
        case "X" | "x" | "Z":
            return ZONE
        case "z" | "V" | "O":
            return r"(?P<zn>UTC|GMT|[A-Za-z][A-Za-z0-9_/+-]{1,31})" if strict else \
                r"(?P<zn>UTC|GMT)"
    raise PatternError(f"pattern letter {run!r} is not supported (use y M d H h m s S a E "
                       "X Z z, quote literal text as 'T')")


def compile_java(pattern: str, *, strict: bool = True) -> str:
    """The regex text of a Java DateTimeFormatter / Joda pattern (see the module doc)."""
    out: list[str] = []
    depth = 0
    tokens = [m.group(0) for m in _JAVA_TOKEN.finditer(pattern)]
    for i, tok in enumerate(tokens):
        if tok.startswith("'"):
            out.append(re.escape(tok[1:-1].replace("''", "'")) if len(tok) > 2 else "'")
        elif tok == "[":
            out.append("(?:")
            depth += 1
        elif tok == "]":
            if depth == 0:
                raise PatternError(f"']' without '[' in time pattern {pattern!r}")
            out.append(")?")
            depth -= 1
        elif tok.isspace():
            out.append(r"\s+")
        elif tok[0].isalpha():
            out.append(_java_field(tok, strict))
        elif tok in ".," and not strict and i + 1 < len(tokens) and tokens[i + 1][0] == "S":
            out.append("[.,]")
        else:
            out.append(re.escape(tok))
    if depth:
        raise PatternError(f"'[' without ']' in time pattern {pattern!r}")
    return "".join(out)


# -- strftime ------------------------------------------------------------------------------------

_STRFTIME = {
    "Y": r"(?P<y>\d{4})", "y": r"(?P<y>\d{2})", "m": r"(?P<mo>\d\d?)", "d": r"(?P<d>\d\d?)",
    "e": r"\s?(?P<d>\d\d?)", "H": r"(?P<h>\d\d?)", "I": r"(?P<h>\d\d?)", "M": r"(?P<mi>\d\d?)",
    "S": r"(?P<s>\d\d?)", "f": r"(?P<f>\d{1,9})", "L": r"(?P<f>\d{3})", "p": r"(?P<ap>(?i:am|pm))",
    "b": f"(?P<mon>(?i:{MONTH_ABBR}))", "h": f"(?P<mon>(?i:{MONTH_ABBR}))",
    "B": f"(?P<mon>(?i:{MONTH_FULL}))", "a": f"(?i:{WEEKDAYS})", "A": f"(?i:{WEEKDAYS_FULL})",
    "z": ZONE, "Z": r"(?P<zn>UTC|GMT|[A-Za-z][A-Za-z0-9_/+-]{1,31})", "j": r"(?P<doy>\d{1,3})",
    "s": r"(?P<ep>\d{9,19})", "%": "%",
}
_STRFTIME_SHORT = {"T": "%H:%M:%S", "F": "%Y-%m-%d", "D": "%m/%d/%y", "R": "%H:%M",
                   "c": "%a %b %e %H:%M:%S %Y"}


def compile_strftime(pattern: str) -> str:
    """The regex text of a strftime / strptime pattern."""
    for k, v in _STRFTIME_SHORT.items():
        pattern = pattern.replace("%" + k, v)
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%":
            if i + 1 >= len(pattern) or pattern[i + 1] not in _STRFTIME:
                d = pattern[i + 1:i + 2] or "end of pattern"
                raise PatternError(f"strftime directive %{d} is not supported in "
                                   f"{pattern!r} (use %Y %y %m %d %e %H %I %M %S %f %p %b "
                                   "%B %a %A %z %Z %j %s %T %F)")
            out.append(_STRFTIME[pattern[i + 1]])
            i += 2
        elif c.isspace():
            while i < len(pattern) and pattern[i].isspace():
                i += 1
            out.append(r"\s+")
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def time_format(pattern: str) -> StampLayout:
    """The layout of the ``time-format`` option: strftime when it contains ``%``, else a
    Java/Joda pattern; PatternError says what is wrong."""
    text = compile_strftime(pattern) if "%" in pattern else compile_java(pattern)
    try:
        regex = re.compile(text + _END)
    except re.error as exc:
        raise PatternError(f"time pattern {pattern!r} is not valid: {exc}") from exc
    names = set(regex.groupindex)
    if not names & {"ep", "d", "doy", "h"}:
        raise PatternError(f"time pattern {pattern!r} has neither a date nor a time of day")
    if "h" in names and "ap" not in names and re.search(r"%I|(?<![A-Za-z'])h", pattern):
        raise PatternError(f"time pattern {pattern!r} has a 12-hour field but no AM/PM "
                           "field (a, %p)")
    return StampLayout("time-format", pattern, regex, bool(names & {"ep", "h"}))


# -- the catalogue ------------------------------------------------------------------------------

_EPOCHS = (
    ("epoch seconds", r"(?P<ep>\d{10})(?:\.(?P<f>\d{1,9}))?"),
    ("epoch millis", r"(?P<ep>\d{13})"),
    ("epoch micros", r"(?P<ep>\d{16})"),
)

# (name, Java pattern); more specific layouts first where two could match the same text
_LAYOUTS = (
    ("ISO8601", "yyyy-MM-dd'T'HH:mm:ss[.SSS][XXX]"),
    ("ISO8601 space", "yyyy-MM-dd HH:mm:ss[,SSS][ z][XXX]"),
    ("ISO8601 space zone", "yyyy-MM-dd HH:mm:ss[,SSS] XXX"),
    ("ISO8601 basic", "yyyyMMdd'T'HHmmss[.SSS][XXX]"),
    ("yyyy/MM/dd", "yyyy/MM/dd HH:mm:ss[.SSS]"),
    ("yyyy.MM.dd", "yyyy.MM.dd HH:mm:ss[.SSS]"),
    ("DB2", "yyyy-MM-dd-HH.mm.ss[.SSS]"),
    ("yyyy-MM-dd_HH:mm:ss", "yyyy-MM-dd_HH:mm:ss[.SSS]"),
    ("yyyyMMdd-HH:mm:ss:SSS", "yyyyMMdd-HH:mm:ss[:SSS]"),
    ("yyyyMMdd-HH:mm:ss.SSS", "yyyyMMdd-HH:mm:ss.SSS"),
    ("yyyyMMdd HH:mm:ss", "yyyyMMdd HH:mm:ss[.SSS]"),
    ("yyyyMMddHHmmss", "yyyyMMddHHmmss[.SSS]"),
    ("yy/MM/dd", "yy/MM/dd HH:mm:ss[.SSS]"),
    ("yy-MM-dd", "yy-MM-dd HH:mm:ss[.SSS]"),
    ("yyMMdd HHmmss", "yyMMdd HHmmss"),
    ("yyMMdd HH:mm:ss", "yyMMdd H:mm:ss"),
    ("DATESTAMP_US 12h", "M/d/yyyy h:mm:ss[.SSS] a"),
    ("DATESTAMP_US", "MM/dd/yyyy HH:mm:ss[.SSS]"),
    ("DATESTAMP_EU", "dd/MM/yyyy HH:mm:ss[.SSS]"),
    ("DATESTAMP_US yy", "MM/dd/yy HH:mm:ss[.SSS]"),
    ("DATESTAMP_EU yy", "dd/MM/yy HH:mm:ss[.SSS]"),
    ("MM-dd-yyyy", "MM-dd-yyyy HH:mm:ss[.SSS]"),
    ("dd-MM-yyyy", "dd-MM-yyyy HH:mm:ss[.SSS]"),
    ("dd.MM.yyyy", "dd.MM.yyyy HH:mm:ss[.SSS]"),
    ("HTTPDATE", "dd/MMM/yyyy:HH:mm:ss[ Z]"),
    ("CATALINA", "dd-MMM-yyyy HH:mm:ss[.SSS]"),
    ("log4j DATE", "d MMM yyyy HH:mm:ss[,SSS]"),
    ("RFC 1123", "EEE, d MMM yyyy HH:mm:ss[ Z][ z]"),
    ("RFC 850", "EEEE, dd-MMM-yy HH:mm:ss[ z]"),
    ("ANSIC", "EEE MMM d HH:mm:ss[.SSS] yyyy"),
    ("UNIX date", "EEE MMM d HH:mm:ss[.SSS] z yyyy"),
    ("RubyDate", "EEE MMM d HH:mm:ss Z yyyy"),
    ("ANSIC no year", "EEE MMM d HH:mm:ss[.SSS]"),
    ("Java 12h", "MMM d, yyyy h:mm:ss a"),
    ("MMM d yyyy", "MMM d yyyy HH:mm:ss[.SSS]"),
    ("yyyy MMM d", "yyyy MMM d HH:mm:ss[.SSS]"),
    ("SYSLOGTIMESTAMP", "MMM d HH:mm:ss[.SSS]"),
    ("logcat", "MM-dd HH:mm:ss[.SSS]"),
    ("MM/dd", "MM/dd HH:mm:ss[.SSS]"),
    ("MM.dd", "MM.dd HH:mm:ss[.SSS]"),
    ("MMdd glog", "MMdd HH:mm:ss[.SSS]"),
    ("date yyyy-MM-dd", "yyyy-MM-dd"),
    ("date yyyy.MM.dd", "yyyy.MM.dd"),
    ("date yyyy/MM/dd", "yyyy/MM/dd"),
    ("TIME", "HH:mm:ss[.SSS]"),
)


def _catalogue() -> tuple[StampLayout, ...]:
    out = []
    for name, pattern in _LAYOUTS:
        text = compile_java(pattern, strict=False)
        if name == "MMdd glog":  # glog/klog glue the level letter to the date: I0518
            text = r"(?P<lv>[IWEFD])?" + text
        regex = re.compile(text + _END)
        out.append(StampLayout(name, pattern, regex, "h" in regex.groupindex))
    for name, text in _EPOCHS:
        out.append(StampLayout(name, name, re.compile(text + _END), True))
    return tuple(out)


CATALOGUE: tuple[StampLayout, ...] = _catalogue()
