"""Parsers of the tabular metric formats: long CSV / Parquet and the PetShop wide CSV.

**Long format** (CSV with a header line, or Parquet), one sample per row. Columns:

- ``timestamp`` (required): ISO 8601 (a timestamp without a zone is read in the ``tz``
  option's zone, default UTC) or a number = Unix epoch **seconds** (fractions allowed).
  Parquet may also use a timestamp column (a zone-less one is read in ``tz``).
- ``metric`` (required): the metric name, non-empty.
- ``value`` (required): a number; ``NaN``, ``Inf``, ``+Inf``, ``-Inf`` allowed.
- ``labels`` (optional): ``k=v;k=v`` or a JSON object of strings (``{"pod": "a"}``).
- ``unit`` (optional): the series' unit.
- any other column is a label named after the column (an empty cell: label absent).

Rows are processed column-wise with pyarrow; a bad row is rejected with its line (CSV,
header = line 1) or row (Parquet, first row = 1) number; empty lines are ignored.

**PetShop wide CSV** (``amazon-science/petshop-root-cause-analysis``): a 3-row column header
(``microservice`` = the call-graph node, ``metric``, ``statistic``), a 4th row
``unix_timestamp``, then one row per interval: the Unix timestamp in seconds, then one cell per
column. Each column is a series ``<metric>{service="<node>", statistic="<statistic>"}``; an
empty cell is no sample.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ingest.base import Input
from ingest.metrics_series import MAX_MS, MIN_MS, Chunk, Labels, SeriesCatalog

Reject = Callable[[str, str, str], None]  # (where, reason, raw record)
LONG_COLUMNS = ("timestamp", "metric", "value", "labels", "unit")
PETSHOP_HEADER = ("microservice", "metric", "statistic", "unix_timestamp")


class TableError(ValueError):
    """A whole table that cannot be read (bad CSV structure, unreadable Parquet)."""


def zone(name: str | None) -> tzinfo:
    from datetime import UTC

    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"option tz: unknown time zone {name!r}") from exc


# -- long format -------------------------------------------------------------------------------

def read_long_csv(inp: Input) -> tuple[pa.Table, np.ndarray, list[int]]:
    """The CSV as string columns, each row's line number, and the lines that had the wrong
    number of cells."""
    header = next(csv.reader([_first_line(inp)]), [])
    table, invalid = _read_strings(
        inp, pcsv.ReadOptions(use_threads=False, block_size=1 << 24), header)
    lines = _line_numbers(2, table.num_rows, invalid)
    return table, lines, invalid


def _read_strings(inp: Input, read_options: pcsv.ReadOptions, columns: list[str]
                  ) -> tuple[pa.Table, list[int]]:
    """The CSV with every cell a string (never null), and the line numbers of the rows the
    reader skipped for having the wrong number of cells."""
    invalid: list[int] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append(row.number)
        return "skip"

    source = inp.path if inp.path is not None else pa.BufferReader(inp.read_bytes())
    try:
        table = pcsv.read_csv(
            source, read_options=read_options,
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid,
                                            ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"cannot read CSV: {exc}") from exc
    try:
        table.column_names  # noqa: B018 - decoded here: a header of another encoding
    except UnicodeDecodeError as exc:
        raise TableError(f"line 1: the header is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None
    return table, invalid


def _line_numbers(first: int, rows: int, invalid: list[int]) -> np.ndarray:
    """The line of each parsed row: every line from ``first`` on is a row (blank lines too,
    as ``ignore_empty_lines=False``) except the ``invalid`` ones the reader skipped."""
    numbers = np.arange(first, first + rows + len(invalid))
    if not invalid:
        return numbers
    keep = np.ones(len(numbers), dtype=bool)
    keep[np.array(invalid, dtype=np.int64) - first] = False
    return numbers[keep]


def read_long_parquet(inp: Input) -> pa.Table:
    try:
        source = inp.path if inp.path is not None else pa.BufferReader(inp.read_bytes())
        return pq.read_table(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"cannot read Parquet: {exc}") from exc


def long_samples(table: pa.Table, numbers: np.ndarray, word: str, catalog: SeriesCatalog,
                 scope: str, file: str, fmt: str, tz: tzinfo, reject: Reject) -> Chunk:
    """Samples of a long-format table; ``numbers`` are the rows' line/row numbers."""
    missing = [c for c in ("timestamp", "metric", "value") if c not in table.column_names]
    if missing:
        raise TableError(f"missing column(s) {', '.join(missing)} (need timestamp, metric, "
                         "value)")
    n = table.num_rows
    strings = {c: _as_strings(table.column(c)) for c in table.column_names
               if c not in ("timestamp", "value")}
    empty = np.zeros(n, dtype=bool)
    if all(pa.types.is_string(t) for t in table.schema.types):  # CSV: blank lines are rows
        empty = ~empty
        for c in table.column_names:
            empty &= _np(pc.equal(pc.fill_null(table.column(c), ""), "")).astype(bool)
    reasons: dict[int, str] = {}
    ts, bad_ts = timestamps(table.column("timestamp"), tz)
    for i in np.flatnonzero(bad_ts & ~empty):
        reasons[int(i)] = "bad timestamp: expected ISO 8601 or Unix epoch seconds " \
            "(1970 .. 9999)"
    values, bad_v = floats(table.column("value"))
    for i in np.flatnonzero(bad_v & ~empty):
        reasons.setdefault(int(i), "value is not a number")
    extra = [c for c in table.column_names if c not in LONG_COLUMNS]
    labels_col = strings.get("labels", pa.array([""] * n, pa.string()))
    key = pc.binary_join_element_wise(strings["metric"], labels_col,
                                      *[strings[c] for c in extra], "\x1f")
    enc = _combined(pc.dictionary_encode(key))
    codes = _np(enc.indices).astype(np.int64)
    series = np.full(len(enc.dictionary), -1, dtype=np.int64)
    key_reason: dict[int, str] = {}
    first_row = _first_rows(codes, len(series))
    for k, text in enumerate(enc.dictionary.to_pylist()):
        try:
            metric, labels = _series_of(text, extra)
            series[k] = catalog.index(scope, metric, labels, file=file,
                                      where=f"{word} {numbers[first_row[k]]}", fmt=fmt)
        except ValueError as exc:
            key_reason[k] = str(exc)
    _set_units(strings.get("unit"), codes, series, catalog)
    ok = ~(empty | bad_ts | bad_v) & (series[codes] >= 0)
    for i in np.flatnonzero(~ok & ~empty):
        reason = reasons.get(int(i)) or key_reason.get(int(codes[i]), "bad row")
        reject(f"{word} {numbers[i]}", reason, _row_text(table, int(i)))
    return Chunk(series[codes[ok]], ts[ok], values[ok])


def _series_of(text: str, extra: Sequence[str]) -> tuple[str, Labels]:
    metric, labels_text, *cells = text.split("\x1f")
    if not metric.strip():
        raise ValueError("empty metric name")
    labels = parse_labels(labels_text)
    for name, cell in zip(extra, cells, strict=True):
        if cell == "":
            continue
        if name in labels:
            raise ValueError(f"label {name!r} given twice (labels column and its own column)")
        labels[name] = cell
    return metric.strip(), tuple(sorted(labels.items()))


def parse_labels(text: str) -> dict[str, str]:
    """``k=v;k=v`` or a JSON object of strings; ValueError when malformed."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"labels: invalid JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise ValueError("labels: a JSON object of string values is expected")
        if any(not k for k in doc):
            raise ValueError("labels: empty label name")
        return dict(doc)
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"labels: expected k=v;k=v, got {part!r}")
        if name in out:
            raise ValueError(f"labels: label {name!r} given twice")
        out[name] = value.strip()
    return out


def _set_units(units: pa.Array | None, codes: np.ndarray, series: np.ndarray,
               catalog: SeriesCatalog) -> None:
    if units is None:
        return
    pairs = _combined(pc.dictionary_encode(pc.binary_join_element_wise(
        pa.array(codes.astype(str)), units, "\x1f"))).dictionary.to_pylist()
    for pair in pairs:
        code, unit = pair.split("\x1f", 1)
        target = series[int(code)]
        if unit and target >= 0:
            catalog.items[target].unit = unit


def _first_rows(codes: np.ndarray, n: int) -> np.ndarray:
    first = np.full(n, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def _row_text(table: pa.Table, i: int) -> str:
    row = table.slice(i, 1).to_pylist()[0]
    return ",".join("" if v is None else str(v) for v in row.values())


# -- PetShop wide CSV ----------------------------------------------------------------------------

def petshop_samples(inp: Input, catalog: SeriesCatalog, scope: str, reject: Reject) -> Chunk:
    """Samples of a PetShop ``metrics.csv`` (see the module doc)."""
    text_head = _head_lines(inp, 4)
    rows = list(csv.reader(text_head))
    if len(rows) < 4 or tuple(r[0] if r else "" for r in rows) != PETSHOP_HEADER or \
            len({len(r) for r in rows}) != 1:
        raise TableError("expected the PetShop header rows microservice / metric / "
                         "statistic / unix_timestamp with equal column counts")
    nodes, metrics, stats = rows[0], rows[1], rows[2]
    table, invalid = _read_strings(
        inp, pcsv.ReadOptions(use_threads=False, skip_rows=4, autogenerate_column_names=True),
        [f"f{i}" for i in range(len(nodes))])
    for number in invalid:
        reject(f"line {number}", f"expected {len(nodes)} cells", "")
    lines = _line_numbers(5, table.num_rows, invalid)
    seconds, bad_ts = floats(table.column(0))
    ts = np.rint(seconds * 1000)
    bad_ts |= ~np.isfinite(ts) | (ts < MIN_MS) | (ts > MAX_MS)
    ts = np.where(bad_ts, 0, ts).astype(np.int64)
    blank = _np(pc.equal(table.column(0), "")).astype(bool)
    for i in np.flatnonzero(bad_ts & ~blank):
        reject(f"line {lines[i]}", "unix_timestamp is not Unix epoch seconds",
               _row_text(table, int(i)))
    # all value cells as one column-major array: one cast instead of one per column
    n, width = table.num_rows, len(nodes) - 1
    cells = pa.concat_arrays([_as_strings(table.column(c)) for c in range(1, len(nodes))])
    present = (~_np(pc.equal(cells, "")).astype(bool)).reshape(width, n) & ~bad_ts
    values, bad = floats(cells)
    values, bad = values.reshape(width, n), bad.reshape(width, n) & present
    for c, i in zip(*np.nonzero(bad), strict=True):
        reject(f"line {lines[i]}", f"column {c + 2} ({nodes[c + 1]} {metrics[c + 1]} "
               f"{stats[c + 1]}): {cells[int(c * n + i)].as_py()!r} is not a number",
               _row_text(table, int(i)))
    keep = present & ~bad
    try:
        series = np.array([catalog.index(scope, metrics[c], tuple(sorted(
            {"service": nodes[c], "statistic": stats[c]}.items())), file=inp.name,
            where=f"column {c + 1}", fmt="petshop") if keep[c - 1].any() else -1
            for c in range(1, len(nodes))], dtype=np.int64)
    except ValueError as exc:  # an oversized header cell
        raise TableError(f"header: {exc}") from None
    return Chunk(np.repeat(series, n).reshape(width, n)[keep],
                 np.broadcast_to(ts, (width, n))[keep], values[keep])


# -- vectorised value parsing ------------------------------------------------------------------

def floats(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 values, bad mask)``: numeric columns as they are, strings parsed."""
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = _np(pc.cast(col, pa.float64()))
        nulls = _np(pc.is_null(col)).astype(bool)
        return np.where(nulls, 0.0, values), nulls
    strings = _as_strings(col)
    empty = pc.equal(strings, "")
    try:  # empty cells become nulls (bad), the rest must all be numbers
        parsed = pc.cast(pc.if_else(empty, pa.scalar(None, pa.string()), strings), pa.float64())
        return _np(pc.fill_null(parsed, 0.0)), _np(empty).astype(bool)
    except pa.ArrowInvalid:
        pass  # some cell is not a number: find which, one by one
    texts = strings.to_pylist()
    values = np.zeros(len(texts))
    bad = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        try:
            if not text or "_" in text:
                raise ValueError
            values[i] = float(text)
        except ValueError:
            bad[i] = True
    return values, bad


def timestamps(col: pa.ChunkedArray | pa.Array, tz: tzinfo) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch ms, bad mask)`` of a timestamp column (see the module doc for the forms)."""
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, _tz_name(tz), ambiguous="earliest",
                                     nonexistent="earliest")
        ms = _np(pc.cast(pc.cast(col, pa.timestamp("ms", "UTC")), pa.int64()))
        return _checked_ms(ms.astype(np.float64), _np(pc.is_null(col)).astype(bool))
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        seconds, nulls = floats(col)
        return _checked_ms(np.rint(seconds * 1000), nulls)
    strings = _as_strings(col)
    for target in (pa.float64(), pa.timestamp("ms", "UTC")):  # all seconds, or all ISO + zone
        try:
            parsed = pc.cast(strings, target)
        except pa.ArrowInvalid:
            continue
        if target == pa.float64():
            return _checked_ms(np.rint(_np(parsed) * 1000), np.zeros(len(strings), bool))
        return _checked_ms(_np(pc.cast(parsed, pa.int64())).astype(np.float64),
                           np.zeros(len(strings), bool))
    ms = np.array([_text_ms(text, tz) for text in strings.to_pylist()], dtype=np.float64)
    return _checked_ms(ms, np.isnan(ms))


def _text_ms(text: str | None, tz: tzinfo) -> float:
    """Epoch ms of Unix seconds or ISO 8601 text; NaN when it is neither."""
    if not text:
        return np.nan
    try:
        if "_" not in text:
            return float(np.rint(float(text) * 1000))
    except ValueError:
        pass
    return _iso_ms(text, tz)


def _iso_ms(text: str | None, tz: tzinfo) -> float:
    if not text:
        return np.nan
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        return np.nan
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return round(when.timestamp() * 1000)


def _checked_ms(ms: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bad = bad | ~np.isfinite(ms) | (ms < MIN_MS) | (ms > MAX_MS)
    return np.where(bad, 0, ms).astype(np.int64), bad


def _tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or "UTC"


def _as_strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    return pc.fill_null(col.cast(pa.string()), "")


def _combined(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _np(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


# -- peeking at inputs -------------------------------------------------------------------------

def _head_lines(inp: Input, n: int) -> list[str]:
    out = []
    for line in inp.lines():
        out.append(line)
        if len(out) == n:
            break
    return out


def _first_line(inp: Input) -> str:
    lines = _head_lines(inp, 1)
    return lines[0] if lines else ""


def head_text(inp: Input, size: int = 65_536) -> str:
    """The first ``size`` bytes of an input, decoded leniently."""
    if inp.path is not None:
        with inp.path.open("rb") as fh:
            raw = fh.read(size)
    else:
        raw = (inp.data or b"")[:size]
    return raw.decode("utf-8", errors="replace")


def sniff_csv(inp: Input) -> str | None:
    """``long`` / ``petshop`` from a CSV's first line, None when it is neither."""
    first = _csv_header(inp)
    if first[:1] == ["microservice"]:
        return "petshop"
    if set(LONG_REQUIRED) <= {c.strip() for c in first}:
        return "long"
    return None


LONG_REQUIRED = ("timestamp", "metric", "value")


def missing_long_columns(inp: Input) -> list[str]:
    """The required long-format columns a CSV header lacks when it has some of them (a
    long CSV missing a column, to reject rather than skip); [] otherwise."""
    have = {c.strip() for c in _csv_header(inp)}
    missing = [c for c in LONG_REQUIRED if c not in have]
    return missing if len(missing) < len(LONG_REQUIRED) else []


def _csv_header(inp: Input) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(head_text(inp, 8192))), [])
    except csv.Error:
        return []
