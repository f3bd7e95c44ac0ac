"""The span table: one span per row, CSV (header line; ``.csv`` or gzip ``.csv.gz``) or
Parquet. Columns are specified in docs/ingest/traces.md; in short:

``trace_id``, ``span_id`` (hex, up to 32 / 16 digits, shorter ones left-padded with zeros),
``parent_span_id`` (empty or ``root`` for a root), ``service``, ``pod`` (or ``instance``),
``namespace``, ``operation``, the times — ``start_unix_nano`` / ``end_unix_nano`` (integer
nanoseconds), or ``start`` / ``end`` as ISO 8601 text (zone-less text in the ``tz`` option)
or Unix epoch numbers in the unit of the ``time_unit`` option (default seconds) — and
optional ``status`` (ok / error / unset), ``status_message`` and ``kind`` (server, client,
producer, consumer, internal, unspecified).

Rows are checked column-wise; a bad row is refused with ``line N`` (CSV, the header is
line 1) or ``row N`` (Parquet, the first row is 1) and its first problem. Blank lines are
skipped. A table without the required columns raises :class:`TraceInputError`.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from datetime import tzinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.base import Input
from ingest.metrics_tables import TableError, read_long_csv, read_long_parquet
from ingest.traces.spans import (
    KIND_NAMES,
    MAX_MESSAGE,
    STATUS_NAMES,
    SpanBatch,
    TraceInputError,
    head_bytes,
    hex_ids,
)

Reject = Callable[[str, str, str | None], None]  # (where, reason, raw record)
REQUIRED = ("trace_id", "span_id", "service", "operation")
TIME_PAIRS = (("start_unix_nano", "end_unix_nano", 1), ("start", "end", None))
UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ZONED = r"([zZ]|[+-]\d\d(:?\d\d)?)$"
_MAX_NS = (1 << 63) - 1


def read_table(inp: Input) -> tuple[pa.Table, np.ndarray, str, list[int]]:
    """The table, each row's number, the word for it (``line`` / ``row``), and the CSV lines
    the reader skipped for having the wrong number of cells."""
    head = head_bytes(inp, 4)
    try:
        if head == b"PAR1":
            table = read_long_parquet(inp)
            return table, np.arange(1, table.num_rows + 1), "row", []
        if head[:2] == b"\x1f\x8b":  # gzip: decompressed in memory, read as CSV
            try:
                inp = Input.of_bytes(inp.name, gzip.decompress(inp.read_bytes()))
            except (OSError, EOFError) as exc:
                raise TraceInputError(f"cannot decompress gzip: {exc}") from None
        table, lines, invalid = read_long_csv(inp)
        return table, lines, "line", invalid
    except TableError as exc:
        raise TraceInputError(str(exc)) from None


def table_spans(table: pa.Table, numbers: np.ndarray, word: str, time_unit: str, tz: tzinfo,
                reject: Reject) -> SpanBatch:
    """The spans of a span table; refused rows are reported through ``reject``."""
    cols = set(table.column_names)
    missing = [c for c in REQUIRED if c not in cols]
    times = next(((s, e, u) for s, e, u in TIME_PAIRS if s in cols and e in cols), None)
    if missing or times is None:
        need = missing + ([] if times else ["start_unix_nano/end_unix_nano or start/end"])
        raise TraceInputError(f"span table: missing column(s) {', '.join(need)} (columns: "
                              f"{', '.join(table.column_names) or 'none'})")
    n = table.num_rows
    text = {c: _strings(table.column(c)) for c in table.column_names}
    blank = np.ones(n, dtype=bool)
    for col in text.values():
        blank &= _np(pc.equal(col, "")).astype(bool)
    problems = _Problems(n)
    cells = _checked(table, text, times, time_unit, tz, problems)
    for i in problems.rows(~blank):
        reject(f"{word} {numbers[i]}", problems.reason[i], _row_text(table, int(i)))
    empty = pa.array([""] * n, pa.string())
    pod = text.get("pod", text.get("instance", empty))
    inst, instances = _codes(pc.binary_join_element_wise(
        text["service"], pod, text.get("namespace", empty), "\x1f"))
    op, operations = _codes(text["operation"])
    msg, messages = _codes(pc.utf8_slice_codeunits(text.get("status_message", empty), 0,
                                                   MAX_MESSAGE))
    if messages:  # the empty message is "none"
        msg = np.where(np.array([m == "" for m in messages], dtype=bool)[msg], -1, msg)
    batch = SpanBatch(cells["trace_hi"], cells["trace_lo"], cells["span"], cells["parent"],
                      cells["start"], cells["end"], inst, op, cells["kind"], cells["status"],
                      msg, [(a, b, c) for a, b, c in (s.split("\x1f") for s in instances)],
                      operations, messages)
    return batch.take(~blank & ~problems.bad)


def _checked(table: pa.Table, text: dict[str, pa.Array], times: tuple[str, str, int | None],
             time_unit: str, tz: tzinfo, problems: _Problems) -> dict[str, np.ndarray]:
    """The id, time, status and kind columns parsed; each row's first problem recorded."""
    n = table.num_rows
    words, invalid, zero = _ids(text["trace_id"], 16)
    problems.add(invalid | zero, "bad trace id: expected up to 32 hex digits, not all zero")
    out = {"trace_hi": words[0], "trace_lo": words[1]}
    words, invalid, zero = _ids(text["span_id"], 8)
    problems.add(invalid | zero, "bad span id: expected up to 16 hex digits, not all zero")
    out["span"] = words[0]
    out["parent"] = np.zeros(n, dtype=np.uint64)
    if "parent_span_id" in text:
        raw = text["parent_span_id"]
        none = _np(pc.is_in(pc.utf8_lower(raw), pa.array(["", "root"]))).astype(bool)
        words, invalid, _ = _ids(raw, 8)
        out["parent"] = np.where(none, 0, words[0])  # all zero: no parent, as in OTLP
        problems.add(invalid & ~none, "bad parent span id: expected up to 16 hex digits, "
                     "empty or root")
    for c, what in (("service", "missing service"), ("operation", "missing operation")):
        problems.add(_np(pc.equal(text[c], "")).astype(bool), what)
    unit = UNITS[time_unit] if times[2] is None else times[2]
    out["start"], bad_s = _times(table.column(times[0]), unit, tz)
    out["end"], bad_e = _times(table.column(times[1]), unit, tz)
    problems.add(bad_s, f"bad {times[0]}: {_time_help(times, time_unit)}")
    problems.add(bad_e, f"bad {times[1]}: {_time_help(times, time_unit)}")
    problems.add(~bad_s & ~bad_e & (out["end"] < out["start"]), "end before start")
    out["status"], bad = _enum(text.get("status"), n, STATUS_NAMES, "status_code_")
    problems.add(bad, "unknown status: expected ok, error or unset")
    out["kind"], bad = _enum(text.get("kind"), n, KIND_NAMES, "span_kind_")
    problems.add(bad, f"unknown kind: expected one of {', '.join(KIND_NAMES)}")
    return out


class _Problems:
    """The first problem of each row."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, "", dtype=object)
        self.bad = np.zeros(n, dtype=bool)

    def add(self, mask: np.ndarray, reason: str) -> None:
        new = mask & ~self.bad
        self.reason[new] = reason
        self.bad |= new

    def rows(self, among: np.ndarray) -> np.ndarray:
        return np.flatnonzero(among & self.bad)


def _ids(col: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(width // 8, n)`` uint64 words of a hex id column, the mask of the invalid ids (not
    hex, empty, too long) and the mask of the all-zero ones."""
    digits = 2 * width
    col = pc.utf8_trim_whitespace(col)
    lengths = _np(pc.binary_length(col)).astype(np.int64)
    fits = lengths <= digits
    padded = pc.utf8_lpad(pc.if_else(pa.array(fits), col, ""), digits, "0")
    # non-ASCII text pads to more bytes than digits: such ids are bad, read as zeros
    ascii_ok = _np(pc.binary_length(padded)) == digits
    padded = pc.if_else(pa.array(ascii_ok), padded, "0" * digits)
    words, invalid = hex_ids(_fixed_bytes(padded, digits),
                             np.where(fits & ascii_ok, lengths, digits + 1), width)
    return words, invalid, (words == 0).all(axis=0)


def _fixed_bytes(arr: pa.Array, width: int) -> np.ndarray:
    """The UTF-8 bytes of a string array whose values are all ``width`` bytes long, as an
    ``(n, width)`` array (read from the Arrow buffers, no per-value copies)."""
    if not len(arr):
        return np.empty((0, width), dtype=np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr)
                                                               + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    return data[offsets[0]:offsets[-1]].reshape(len(arr), width)


def _times(col: pa.ChunkedArray, unit_ns: int, tz: tzinfo) -> tuple[np.ndarray, np.ndarray]:
    """``(ns since the epoch, bad mask)`` of a time column (see the module doc)."""
    col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, getattr(tz, "key", "UTC"), ambiguous="earliest",
                                     nonexistent="earliest")
        ns = _np(pc.fill_null(pc.cast(pc.cast(col, pa.timestamp("ns", "UTC")), pa.int64()),
                              0))
        return ns, ns <= 0
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        nulls = _np(pc.is_null(col)).astype(bool)
        if pa.types.is_integer(col.type):  # exact: nanoseconds do not fit a double
            ints = _np(pc.fill_null(pc.cast(col, pa.int64(), safe=False), 0))
            ns, bad = _scaled(ints.astype(np.float64), ints, unit_ns)
        else:
            ns, bad = _scaled(_np(pc.fill_null(col, np.nan)).astype(np.float64), None,
                              unit_ns)
        return ns, bad | nulls
    text = pc.utf8_trim_whitespace(_strings(col))
    n = len(text)
    ns = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    numeric = _np(pc.match_substring_regex(text, _NUMBER)).astype(bool)
    zoned = ~numeric & _np(pc.match_substring_regex(text, _ZONED)).astype(bool)
    naive = ~numeric & ~zoned
    for mask, parse in ((numeric, lambda a: _number_ns(a, unit_ns)),
                        (zoned, _zoned_ns), (naive, lambda a: _naive_ns(a, tz))):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        part = text.take(pa.array(rows))
        try:
            ns[rows], bad[rows] = parse(part)
        except (pa.ArrowInvalid, ValueError):  # some cell is bad: find which, one by one
            for r in rows:
                try:
                    one, _ = parse(text.slice(int(r), 1))
                    ns[r] = one[0]
                except (pa.ArrowInvalid, ValueError):
                    bad[r] = True
    return np.where(bad, 0, ns), bad | (ns <= 0)


def _number_ns(text: pa.Array, unit_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers in ``unit_ns`` to exact nanoseconds: read as decimals with as many fraction
    digits as the unit has nanoseconds (9 for seconds), whose unscaled integer *is* the
    nanosecond count; a double would lose the last digits of an epoch in nanoseconds."""
    scale = len(str(unit_ns)) - 1
    try:
        dec = pc.cast(text, pa.decimal128(38, scale))
    except pa.ArrowInvalid:  # finer than a nanosecond: rounded through a double
        return _scaled(_np(pc.cast(text, pa.float64())), None, unit_ns)
    words = np.frombuffer(dec.buffers()[1], dtype=np.int64).reshape(-1, 2)
    low, high = words[dec.offset:dec.offset + len(dec)].T  # 128-bit little-endian halves
    ok = (high == 0) & (low > 0)
    return np.where(ok, low, 0), ~ok


def _scaled(values: np.ndarray, ints: np.ndarray | None, unit_ns: int
            ) -> tuple[np.ndarray, np.ndarray]:
    bad = ~np.isfinite(values) | (values <= 0) | (values * unit_ns >= _MAX_NS)
    if ints is not None:
        ns = np.where(bad, 0, ints) * unit_ns
    else:
        ns = np.rint(np.where(bad, 0, values) * unit_ns).astype(np.int64)
    return ns, bad


def _zoned_ns(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    ns = _np(pc.cast(pc.cast(text, pa.timestamp("ns", "UTC")), pa.int64()))
    return ns, np.zeros(len(ns), dtype=bool)


def _naive_ns(text: pa.Array, tz: tzinfo) -> tuple[np.ndarray, np.ndarray]:
    naive = pc.cast(text, pa.timestamp("ns"))
    local = pc.assume_timezone(naive, getattr(tz, "key", "UTC"), ambiguous="earliest",
                               nonexistent="earliest")
    ns = _np(pc.cast(local, pa.int64()))
    return ns, np.zeros(len(ns), dtype=bool)


def _time_help(pair: tuple[str, str, int | None], unit: str) -> str:
    if pair[2] is not None:
        return "expected integer nanoseconds since the Unix epoch"
    return f"expected ISO 8601 or Unix epoch {unit} (option time_unit)"


def _enum(col: pa.Array | None, n: int, names: tuple[str, ...], prefix: str
          ) -> tuple[np.ndarray, np.ndarray]:
    if col is None:
        return np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool)
    enc = pc.dictionary_encode(pc.utf8_lower(pc.utf8_trim_whitespace(col)))
    lookup = []
    for value in enc.dictionary.to_pylist():
        name = value.removeprefix(prefix)
        if name in names:
            lookup.append(names.index(name))
        elif name == "":
            lookup.append(0)
        elif re.fullmatch(r"\d", name) and int(name) < len(names):
            lookup.append(int(name))
        else:
            lookup.append(-1)
    codes = np.array(lookup, dtype=np.int64)[_np(enc.indices).astype(np.int64)] \
        if lookup else np.zeros(n, dtype=np.int64)
    return np.maximum(codes, 0).astype(np.int8), codes < 0


def _codes(col: pa.Array) -> tuple[np.ndarray, list[str]]:
    enc = pc.dictionary_encode(col)
    return _np(enc.indices).astype(np.int64), enc.dictionary.to_pylist()


def _strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return pc.fill_null(col, "")


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def _row_text(table: pa.Table, i: int) -> str:
    row = table.slice(i, 1).to_pylist()[0]
    return ",".join("" if v is None else str(v) for v in row.values())

