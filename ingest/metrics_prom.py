"""Parser of the Prometheus text exposition format (version 0.0.4) into sample chunks.

One sample per line: ``name{label="value",...} value [timestamp]`` — the value a Go float
(``NaN``, ``+Inf``, ``-Inf`` included), the optional timestamp integer milliseconds since the
Unix epoch (UTC). A sample without a timestamp takes the input's snapshot time (``--as-of``,
else the file's modification time, else the ingest time). ``# TYPE``, ``# HELP`` and
``# UNIT`` lines name a metric's type, description and unit; other ``#`` lines are comments.
A bad line (syntax, value, timestamp, a bad ``# TYPE``) is rejected with its line number;
the other lines of the file still land.

Speed: a scrape dump repeats each series' ``name{labels}`` text in every scrape, so the
text left of the value is looked up in a dict and parsed only the first time it is seen.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator

import numpy as np

from ingest.base import Input
from ingest.metrics_series import MAX_MS, MIN_MS, Chunk, Labels, SeriesCatalog

Reject = Callable[[str, str, str], None]  # (where, reason, raw line)

_SERIES = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*\Z", re.S)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(?:,|\Z)')
_ESCAPE = re.compile(r"\\(.)")
TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info",
                   "stateset", "gaugehistogram"})


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], text)


def parse_series(text: str) -> tuple[str, Labels]:
    """``(metric name, sorted labels)`` of ``name{label="value",...}``; ValueError if bad."""
    m = _SERIES.match(text)
    if not m:
        raise ValueError("expected a metric name and optional {labels}")
    labels: dict[str, str] = {}
    body = (m[2] or "").strip()
    pos = 0
    while pos < len(body):
        lm = _LABEL.match(body, pos)
        if not lm:
            raise ValueError(f"bad label syntax at {body[pos:pos + 30]!r}")
        if lm[1] in labels:
            raise ValueError(f"label {lm[1]!r} given twice")
        labels[lm[1]] = _unescape(lm[2])
        pos = lm.end()
    return m[1], tuple(sorted(labels.items()))


def looks_like_exposition(head: str) -> bool:
    """Whether the first sample line of ``head`` parses (for sniffing ``.txt`` files)."""
    for line in head.splitlines()[:50]:
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            if text.startswith(("# TYPE ", "# HELP ")):
                return True
            continue
        close = text.rfind("}")
        key, rest = (text[:close + 1], text[close + 1:]) if close >= 0 else \
            (text.split()[0], " ".join(text.split()[1:]))
        try:
            parse_series(key)
            float(rest.split()[0])
        except (ValueError, IndexError):
            return False
        return True
    return False


class _Metadata:
    """What ``# TYPE``, ``# HELP`` and ``# UNIT`` lines said about metric families."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self.units: dict[str, str] = {}
        self.helps: dict[str, str] = {}

    def comment(self, line: str) -> str | None:
        """Record a comment line; the reason when it is a malformed TYPE/HELP/UNIT line."""
        parts = line.split(None, 3)
        if len(parts) < 2 or parts[1] not in ("TYPE", "HELP", "UNIT"):
            return None  # a plain comment (or "# EOF")
        if len(parts) < 3 or not _SERIES.match(parts[2]) or "{" in parts[2]:
            return f"# {parts[1]} needs a metric name"
        name, rest = parts[2], parts[3].strip() if len(parts) > 3 else ""
        if parts[1] == "TYPE":
            if rest not in TYPES:
                return f"# TYPE {name}: unknown type {rest!r} (one of {', '.join(sorted(TYPES))})"
            self.types[name] = rest
        elif parts[1] == "HELP":
            self.helps[name] = _unescape(rest)
        elif rest:
            self.units[name] = rest
        return None

    def family(self, metric: str) -> str:
        """The metric family a sample name belongs to (``x_bucket`` -> ``x``)."""
        if metric in self.types:
            return metric
        for suffix in ("_total", "_count", "_sum", "_bucket"):
            base = metric[: -len(suffix)]
            if metric.endswith(suffix) and base in self.types:
                return base
        return metric

    def counter(self, metric: str) -> bool | None:
        family = self.family(metric)
        kind = self.types.get(family)
        if kind is None:
            return None  # the name decides (SeriesCatalog)
        if family == metric:
            return kind == "counter"
        return kind in ("counter", "histogram", "summary")


def parse_prometheus(inp: Input, catalog: SeriesCatalog, scope: str, default_ms: int,
                     reject: Reject) -> Iterator[Chunk]:
    """Chunks of samples from an exposition-format input; bad lines go to ``reject``."""
    parser = _Parser(inp.name, catalog, scope, default_ms, reject)
    for first, lines in _blocks(inp):
        chunk = parser.fast(lines, first)
        yield chunk if chunk is not None else parser.careful(lines, first)


def _blocks(inp: Input, size: int = 8 << 20) -> Iterator[tuple[int, list[str]]]:
    """``(number of the first line, lines)`` of about ``size`` bytes each."""
    rest = b""
    lineno = 1
    with inp.path.open("rb") if inp.path is not None else io.BytesIO(inp.data or b"") as fh:
        while True:
            block = fh.read(size)
            data = rest + block
            if not block:
                if data:
                    yield lineno, _split(data)
                return
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1:]
            lines = _split(data[:cut])
            yield lineno, lines
            lineno += len(lines)


def _split(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text.split("\n")


class _Parser:
    """State across the blocks of one input: metadata, the series text cache."""

    def __init__(self, file: str, catalog: SeriesCatalog, scope: str, default_ms: int,
                 reject: Reject) -> None:
        self.file = file
        self.catalog = catalog
        self.scope = scope
        self.default_ms = default_ms
        self.reject = reject
        self.meta = _Metadata()
        self.cache: dict[str, int] = {}

    def series(self, key: str, lineno: int) -> int:
        """The catalogue index of the series written as ``key``; ValueError if malformed."""
        found = self.cache.get(key)
        if found is not None:
            return found
        metric, labels = parse_series(key)
        family = self.meta.family(metric)
        index = self.catalog.index(self.scope, metric, labels, file=self.file,
                                   where=f"line {lineno}", fmt="prometheus",
                                   counter=self.meta.counter(metric),
                                   unit=self.meta.units.get(family),
                                   description=self.meta.helps.get(family))
        self.cache[key] = index
        return index

    def fast(self, lines: list[str], first: int) -> Chunk | None:
        """The block's samples, or None when any line needs a closer look."""
        idx: list[int] = []
        values: list[str] = []
        stamps: list[str] = []
        default = str(self.default_ms)
        get = self.cache.get
        for lineno, line in enumerate(lines, first):
            if not line:
                continue
            if line[0] == "#":
                if self.meta.comment(line):
                    return None
                continue
            close = line.rfind("}")
            if close >= 0:
                key, fields = line[:close + 1], line[close + 1:].split()
            else:
                fields = line.split()
                key = fields.pop(0)
            series = get(key)
            if series is None:
                try:
                    series = self.series(key, lineno)
                except ValueError:
                    return None
            if len(fields) == 2:
                values.append(fields[0])
                stamps.append(fields[1])
            elif len(fields) == 1:
                values.append(fields[0])
                stamps.append(default)
            else:
                return None
            idx.append(series)
        if "_" in "".join(values) or "_" in "".join(stamps):
            return None  # Python and numpy accept 1_000; Prometheus does not
        try:
            val = np.array(values, dtype=np.float64)
            ts = np.array(stamps, dtype=np.int64)
        except (ValueError, OverflowError):
            return None
        if len(ts) and (ts.min() < MIN_MS or ts.max() > MAX_MS):
            return None
        return Chunk(np.array(idx, dtype=np.int64), ts, val)

    def careful(self, lines: list[str], first: int) -> Chunk:
        """The block's samples, line by line, rejecting bad lines."""
        idx: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        for lineno, line in enumerate(lines, first):
            if line[:1] in (" ", "\t"):
                line = line.strip()
            if not line:
                continue
            if line[0] == "#":
                if problem := self.meta.comment(line):
                    self.reject(f"line {lineno}", problem, line)
                continue
            try:
                series, t, v = self._sample(line, lineno)
            except ValueError as exc:
                self.reject(f"line {lineno}", str(exc), line)
                continue
            idx.append(series)
            ts.append(t)
            val.append(v)
        return Chunk(np.array(idx, dtype=np.int64), np.array(ts, dtype=np.int64),
                     np.array(val, dtype=np.float64))

    def _sample(self, line: str, lineno: int) -> tuple[int, int, float]:
        close = line.rfind("}")
        if close >= 0:
            key, fields = line[:close + 1], line[close + 1:].split()
        else:
            fields = line.split()
            key = fields.pop(0)
        series = self.series(key, lineno)
        if len(fields) not in (1, 2):
            raise ValueError(f"expected 'name{{labels}} value [timestamp]', got {len(fields)} "
                             "fields after the series")
        t = self.default_ms
        if len(fields) == 2:
            raw_t = fields[1].removeprefix("+")
            if not (raw_t.isascii() and raw_t.isdigit()) or int(raw_t) > MAX_MS:
                raise ValueError(f"timestamp {fields[1]!r} is not integer milliseconds since "
                                 "the Unix epoch (0 .. year 9999)")
            t = int(raw_t)
        raw_v = fields[0]
        try:
            if "_" in raw_v:
                raise ValueError
            return series, t, float(raw_v)
        except ValueError:
            raise ValueError(f"value {raw_v!r} is not a number") from None
