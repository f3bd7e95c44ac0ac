"""Header layouts learned from a file's own first lines.

A plain log file repeats one header layout on every line: some prefix fields, a timestamp,
then a few fields (pid, level, thread, component) before the message. :func:`learn` finds
that layout in the first ``SAMPLE`` non-empty lines, in two steps:

1. **The timestamp.** Every layout of the catalogue (:mod:`ingest.logparse.stamps`, or only
   the ``time-format`` option's) is tried at the start of each of the first ten
   white-space separated tokens (also just inside a ``[``, ``(`` or ``<``). A candidate is
   a (layout, token index) pair; it counts the lines where it matches *and* reads as a
   valid time. The chosen one has a time of day (dates alone only when nothing else
   matches), is found on at least ``MIN_SHARE`` of the lines and, among those within
   80 % of the most frequent, sits at the earliest token, then matches on the most lines,
   then covers the most text. The tokens before it are header fields.
2. **The fields after it**, by the consistency of columns over the lines that have the
   stamp. Either the stamp is followed by a delimiter (``|``, tab or ``;`` on 90 % of the
   lines): the header is the leading delimited fields that have no blank on 90 % of the
   lines. Or the rest is split into tokens (a bracketed group is one token) and each
   column is classified on every line: level word, number, ``-``, bracketed, ``name:``,
   another timestamp. The header runs through the last *anchor* column: a level column
   (80 % level words, column ≤ 7), a ``-`` column (90 %, column ≤ 2) or a column where
   another timestamp ends (90 %); else through the leading number columns (pid, tid).
   It is then extended by a bracketed column (thread / context; after an anchor also
   ``name [context]``), a ``-`` column, and, on each line where it is there, a
   ``name:`` component token (when 50 % of the lines have one).

Without a timestamp, a level column whose preceding columns all look like header fields
(digits, ``-``, upper-case words, brackets) still makes a header, without a time.

The learned :class:`LearnedFormat` reads every line of the file. A line without the stamp
at its place (a stack trace, a wrapped message) is all message and takes the previous
line's time; a stamp that does not read as a valid time keeps the line, flagged with the
reason and counted — a line is never rejected for its time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ingest.logparse.clock import BadTime, Clock
from ingest.logparse.lines import LEVELS, SHORT_LEVELS, Emitter, LineFormat, LogLine, PlainFormat
from ingest.logparse.stamps import CATALOGUE, StampLayout

SAMPLE = 200  # lines a layout is learned from
MIN_SHARE = 0.3  # of the sample lines that must carry the stamp at one place
CONSISTENT = 0.9  # of the lines for a column to be of one kind
LEVEL_SHARE = 0.8  # of the lines for a level column (some lines use other words)
COMPONENT_SHARE = 0.5
MAX_PREFIX = 10  # tokens searched before the stamp
MAX_COLUMNS = 10  # header columns examined after it
OPENERS = "[(<"
CLOSERS = {"[": "]", "(": ")", "<": ">"}
DELIMITERS = "|\t;"

_TOK = r"\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]\S*|\S+"  # a bracketed group is one token
_TOKEN = re.compile(_TOK)
_COMP = r"[\w.$@/#()-]+(?:\[\d+\]|:\d+)?:|[\w.$@/#-]+:\d+\]"  # name: name[pid]: a.go:12]
_COMPONENT = re.compile(_COMP)
_SKIP = [re.compile(r"\s*(?:\S+\s+){" + str(n) + "}") for n in range(MAX_PREFIX + 1)]
_DIGIT = re.compile(r"\d")
_KIND_NAMES = {"num": "<Pid>", "level": "<Level>", "bracket": "[<Thread>]", "sep": "-",
               "stamp": "<Time2>", "host": "<Host>"}
_SEP = re.compile(r"[-:|>*=~#.+]{1,3}")  # separator tokens: - -- --- : | > >> * . ...
_STRIP = "[]()<>:,"


@dataclass(frozen=True)
class HeaderLayout:
    """A learned header: ``prefix`` tokens, the stamp (None: no time), then either
    ``delimited`` fields split by ``delimiter`` or white-space ``columns`` of the given
    kinds, then an optional ``name:`` component token."""

    stamp: StampLayout | None
    prefix: int = 0
    opener: str = ""
    columns: tuple[str, ...] = ()
    component: bool = False
    delimiter: str = ""
    delimited: int = 0
    sample: int = 0
    matched: int = 0  # sample lines with the stamp at its place

    def describe(self) -> str:
        """The layout in Loghub's notation, e.g. ``<Time> <Pid> <Level> <Component>:``."""
        parts = [f"<F{i + 1}>" for i in range(self.prefix)]
        if self.stamp is not None:
            time = f"<Time {self.stamp.pattern}>"
            parts.append(f"{self.opener}{time}{CLOSERS.get(self.opener, '')}")
        if self.delimiter:
            d = "\\t" if self.delimiter == "\t" else self.delimiter
            return d.join([" ".join(parts)] + ["<Field>"] * self.delimited + ["<Content>"])
        parts += [_KIND_NAMES.get(k, "<Field>") for k in self.columns]
        if self.component:
            parts.append("[<Component>:]")
        return " ".join(parts + ["<Content>"])


# -- learning --------------------------------------------------------------------------------

def learn(sample: Sequence[str], clock: Clock, layouts: Sequence[StampLayout]
          ) -> HeaderLayout | None:
    """The header layout of a file from its first lines, or None when none is found."""
    lines = [s for s in sample if s.strip()][:SAMPLE]
    if not lines:
        return None
    found = _find_stamp(lines, clock, layouts)
    if found is None:
        return _learn_untimed(lines)
    layout, prefix, opener, rests = found
    base = HeaderLayout(layout, prefix, opener, sample=len(lines), matched=len(rests))
    delimiter, fields = _delimited(rests)
    if delimiter:
        return replace(base, delimiter=delimiter, delimited=fields)
    columns, component = _learn_columns(rests, clock, layouts, anchored_only=False)
    return replace(base, columns=columns, component=component)


def _token_starts(line: str, n: int) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", line[:400])][:n]


def _find_stamp(lines: list[str], clock: Clock, layouts: Sequence[StampLayout]
                ) -> tuple[StampLayout, int, str, list[str]] | None:
    """The most consistent (layout, token, opener) of the lines and the text after it."""
    hits: Counter[tuple[int, int, str]] = Counter()
    length: Counter[tuple[int, int, str]] = Counter()
    for line in lines:
        seen: set[tuple[int, int, str]] = set()
        for ti, pos in enumerate(_token_starts(line, MAX_PREFIX + 1)):
            opener = line[pos] if line[pos] in OPENERS else ""
            for li, layout in enumerate(layouts):
                key = (li, ti, opener)
                m = layout.regex.match(line, pos + len(opener))
                if m is None or key in seen or not _valid(clock, layout, m):
                    continue
                seen.add(key)
                hits[key] += 1
                length[key] += m.end() - m.start()
    need = max(1, math.ceil(MIN_SHARE * len(lines)))
    cands = [k for k, n in hits.items() if n >= need]
    if not cands:
        return None
    timed = [k for k in cands if layouts[k[0]].has_time] or cands
    top = max(hits[k] for k in timed)
    best = max(timed, key=lambda k: (hits[k] >= 0.8 * top, -k[1], hits[k],
                                     length[k] / hits[k], -k[0]))
    li, ti, opener = best
    layout = layouts[li]
    rests = []
    for line in lines:
        m = _match_at(line, layout, ti, opener)
        if m is not None:
            rests.append(_after_stamp(line, m.end(), opener))
    return layout, ti, opener, rests


def _valid(clock: Clock, layout: StampLayout, m: re.Match[str]) -> bool:
    try:
        clock.from_match(layout, m)
    except BadTime:
        return False
    return True


def _match_at(line: str, layout: StampLayout, prefix: int, opener: str
              ) -> re.Match[str] | None:
    skip = _SKIP[prefix].match(line)
    if skip is None:
        return None
    pos = skip.end()
    if opener and line.startswith(opener, pos):
        pos += 1
    return layout.regex.match(line, pos)


def _after_stamp(line: str, end: int, opener: str) -> str:
    """The text after a stamp, its closing bracket and a ``,``/``:`` glued to it removed."""
    rest = line[end:]
    if opener and rest[:1] == CLOSERS[opener]:
        rest = rest[1:]
    if rest[:1] in (",", ":") and rest[1:2] in (" ", "\t", ""):
        rest = rest[1:]
    return rest


def _delimited(rests: list[str]) -> tuple[str, int]:
    """(delimiter, number of header fields) when the stamp is followed by a delimiter."""
    if not rests:
        return "", 0
    firsts = Counter(r[:1] for r in rests)
    d, n = firsts.most_common(1)[0]
    if d not in DELIMITERS or n < CONSISTENT * len(rests):
        return "", 0
    fields = 0
    for k in range(1, 7):
        ok = 0
        for r in rests:
            parts = r[1:].split(d, k)
            if len(parts) > k and all(p and not any(c.isspace() for c in p) and len(p) <= 64
                                      for p in parts[:k]):
                ok += 1
        if ok < CONSISTENT * len(rests):
            break
        fields = k
    return d, fields


def level_word(tok: str, after_number: bool = True) -> str | None:
    """The level of a header token (``INFO``, ``[notice]``, ``<Error>``, ``[core:warn]``,
    ``D`` after a number), or None."""
    core = tok.strip(_STRIP).upper()
    if core in LEVELS:
        return LEVELS[core]
    if after_number and len(core) == 1:
        return SHORT_LEVELS.get(core)
    if ":" in core and tok[:1] == "[":  # Apache 2.4: [module:level]
        return LEVELS.get(core.rsplit(":", 1)[1])
    return None


def _kind(tok: str, after_number: bool) -> str:
    if _SEP.fullmatch(tok):
        return "sep"
    core = tok.strip(_STRIP)
    if tok[-1] == ":" and _COMPONENT.fullmatch(tok):
        return "comp"  # also ERROR: (PostgreSQL's LOG: / ERROR: column)
    if level_word(tok, after_number):
        return "level"
    if core.isdigit():
        return "num"
    if tok[0] == "[":
        return "bracket"
    if _COMPONENT.fullmatch(tok):
        return "comp"
    if _DIGIT.search(tok):
        return "id"
    if core.isalpha() and core.isupper():
        return "upper"
    return "word"


def _stamp_ends(rest: str, starts: list[int], clock: Clock,
                layouts: Sequence[StampLayout]) -> dict[int, int]:
    """{column where a timestamp starts: column where it ends} in one line's columns."""
    out = {}
    for c, pos in enumerate(starts):
        for layout in layouts:
            m = layout.regex.match(rest, pos)
            if m is not None and _valid(clock, layout, m):
                end = m.end()
                out[c] = max(i for i, p in enumerate(starts) if p < end)
                break
    return out


def _learn_columns(rests: list[str], clock: Clock | None, layouts: Sequence[StampLayout], *,
                   anchored_only: bool) -> tuple[tuple[str, ...], bool]:
    """The kinds of the header columns after the stamp, and whether a component follows."""
    n = len(rests)
    kinds: list[Counter[str]] = [Counter() for _ in range(MAX_COLUMNS + 2)]
    stamp_end: list[Counter[int]] = [Counter() for _ in range(MAX_COLUMNS + 2)]
    padded = [0] * (MAX_COLUMNS + 2)  # lines whose column c is followed by 2+ blanks
    for rest in rests:
        toks = list(_TOKEN.finditer(rest))[:MAX_COLUMNS + 2]
        prev = ""
        for c, m in enumerate(toks):
            prev = _kind(m.group(), prev == "num")
            kinds[c][prev] += 1
            if rest[m.end():m.end() + 2] in ("  ", " \t", "\t\t", "\t "):
                padded[c] += 1
        if clock is not None:
            for c, e in _stamp_ends(rest, [m.start() for m in toks], clock, layouts).items():
                stamp_end[c][e] += 1

    def share(c: int, *names: str) -> float:
        return sum(kinds[c][k] for k in names) / n if c < len(kinds) and n else 0.0

    end = 0  # header columns
    for c in range(MAX_COLUMNS):
        if share(c, "level") >= LEVEL_SHARE and c <= 7:
            end = c + 1
        elif share(c, "sep") >= CONSISTENT and c <= 6 and not anchored_only:
            end = c + 1
        elif stamp_end[c] and sum(stamp_end[c].values()) >= CONSISTENT * n:
            end = max(end, stamp_end[c].most_common(1)[0][0] + 1)
    if anchored_only:
        if end == 0 or any(share(c, "num", "id", "sep", "upper", "bracket", "level")
                           < CONSISTENT for c in range(end)):
            return (), False
    elif end == 0:
        while end < 3 and share(end, "num") >= CONSISTENT:
            end += 1
    end = _extend(end, share, [p / n if n else 0.0 for p in padded])
    columns = tuple(kinds[c].most_common(1)[0][0] if kinds[c] else "word"
                    for c in range(end))
    if end > 0 and share(end, "comp") < COMPONENT_SHARE <= share(end + 1, "comp") and \
            share(end, "id", "word") >= CONSISTENT:  # host then name: (syslog's shape)
        columns += ("host",)
        end += 1
    return columns, share(end, "comp") >= COMPONENT_SHARE


def _extend(end: int, share: Callable[..., float], padded: list[float]) -> int:
    """The header end moved over a thread / context bracket, a separator, and columns
    padded to a fixed width (followed by 2+ blanks on 90 % of the lines)."""
    anchored = end > 0
    if share(end, "bracket") >= CONSISTENT:
        end += 1
    elif anchored and share(end + 1, "bracket") >= CONSISTENT and \
            share(end, "word", "id", "upper") >= CONSISTENT:
        end += 2  # name [context]
    if share(end, "sep") >= CONSISTENT:
        end += 1
    while anchored and end < MAX_COLUMNS and padded[end] >= CONSISTENT and \
            share(end, "word", "upper", "id") >= CONSISTENT:
        end += 1
    return end


def _learn_untimed(lines: list[str]) -> HeaderLayout | None:
    columns, component = _learn_columns(lines, None, (), anchored_only=True)
    if not columns:
        return None
    return HeaderLayout(None, columns=columns, component=component, sample=len(lines))


def plain_format(sample: Sequence[str], clock: Clock,
                 labels_from: Sequence[tuple[str, str]]) -> LineFormat:
    """The format of a plain file: its learned layout, else the per-line generic split."""
    layout = learn(sample, clock, (clock.layout,) if clock.layout else CATALOGUE)
    if layout is None:
        return PlainFormat(clock, labels_from)
    return LearnedFormat(clock, layout, labels_from)


# -- reading lines with a learned layout ------------------------------------------------------

class LearnedFormat:
    """Plain lines read with a :class:`HeaderLayout` learned from the file; fields
    ``component``, ``thread``, ``pid``."""

    name = "plain"

    def __init__(self, clock: Clock, layout: HeaderLayout,
                 labels_from: Sequence[tuple[str, str]]) -> None:
        self.clock = clock
        self.layout = layout
        self.labels_from = labels_from
        cols = len(layout.columns)
        text = r"\s*" + r"\s+".join(f"({_TOK})" for _ in range(cols))
        if layout.component:
            text += rf"(?:\s+({_COMP})(?=\s|$))?" if cols else rf"(?:({_COMP})(?=\s|$))?"
        self._columns = re.compile(text)
        self._level_at = [i for i, k in enumerate(layout.columns) if k == "level"]
        self._num_at = [i for i, k in enumerate(layout.columns) if k == "num"]
        self._thread_at = [i for i, k in enumerate(layout.columns) if k == "bracket"]

    def describe(self) -> str:
        lay = self.layout
        out = f"header {lay.describe()!r}"
        if lay.stamp is not None:
            out += (f", time format {lay.stamp.pattern!r} ({lay.stamp.name}) on "
                    f"{lay.matched} of the first {lay.sample} lines")
        return out

    def parse(self, line: str) -> LogLine:
        lay = self.layout
        if lay.stamp is None:
            return self._header(line, None, None, "")
        m = _match_at(line, lay.stamp, lay.prefix, lay.opener)
        if m is None:  # a continuation line: all message, the previous line's time
            return LogLine(None, None, line.strip(), ())
        level = SHORT_LEVELS.get(m.group("lv") or "") if "lv" in m.re.groupindex else None
        try:
            time: float | None = self.clock.from_match(lay.stamp, m)
            problem = ""
        except BadTime as exc:
            time, problem = None, str(exc)
        return self._header(_after_stamp(line, m.end(), lay.opener), time, level, problem)

    def _header(self, rest: str, time: float | None, level: str | None, problem: str
                ) -> LogLine:
        lay = self.layout
        fields: dict[str, str] = {}
        if lay.delimiter:
            parts = rest[1:].split(lay.delimiter, lay.delimited)
            if len(parts) <= lay.delimited:
                return LogLine(time, level, rest.strip(), (), problem or None)
            for p in parts[:-1]:
                word = p.strip()
                if level is None and level_word(word, False):
                    level = level_word(word, False)
                elif word.isdigit():
                    fields.setdefault("pid", word)
                else:
                    fields.setdefault("component", word)
            return LogLine(time, level, parts[-1].strip(), self._emitter(fields),
                           problem or None)
        m = self._columns.match(rest)
        if m is None:  # fewer tokens than the header has: keep it all as the message
            return LogLine(time, level, rest.strip(), (), problem or None)
        for i in self._level_at:
            level = level_word(m.group(i + 1)) or level
        for i in self._num_at[:1]:
            fields["pid"] = m.group(i + 1).strip("[]():,")
        for i in self._thread_at[:1]:
            fields["thread"] = m.group(i + 1)[1:].rsplit("]", 1)[0]
        comp = m.group(len(lay.columns) + 1) if lay.component else None
        if comp:
            fields["component"] = comp.rstrip(":]").split("[")[0]
            level = level or LEVELS.get(fields["component"].upper())
        return LogLine(time, level, rest[m.end():].strip(), self._emitter(fields),
                       problem or None)

    def _emitter(self, fields: dict[str, str]) -> Emitter:
        if not self.labels_from:
            return ()
        return tuple((label, fields[name]) for label, name in self.labels_from
                     if fields.get(name))
