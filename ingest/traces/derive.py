"""What spans say, computed column-wise: parent links, entry spans, self time, per-bucket
statistics, new call links and error counts.

Everything here is a pure function of a set of spans, so the result does not depend on how
the spans were split into batches or in which order they came: a bucket computed from two
receiver posts equals the bucket computed from one.

Definitions (docs/ingest/traces.md):

* the **parent** of a span is the span of the same trace whose id is its ``parent`` (a
  missing parent makes it a root);
* an **entry span** serves a request of its service: kind server or consumer, or — kind
  internal / unspecified, as in span tables without a kind — a root, or a span whose parent
  belongs to another service;
* **self time**: the span's duration minus the union of its children's intervals (clipped
  to the span), so time spent waiting for a callee is the callee's, not the caller's. A
  client span that calls another service (kind client, or no server/consumer kind, with a
  child in another service) has no self time of the service: its exclusive time is the
  time on the way to the callee, which is the callee's call gap;
* a **call** is a parent/child pair whose services differ: caller = the parent's service;
* the **call gap** of an entry span called from another service: its parent's duration minus
  its own, when the parent has no other child — the time the caller waited beyond the
  callee's own span (network, queues, connection set-up on the way to the callee). It is
  the callee's: a network delay on a service shows there, not in its server spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.traces.spans import (
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_SERVER,
    KIND_UNSPECIFIED,
    STATUS_ERROR,
    SpanBatch,
)

QUANTILES = (0.5, 0.9, 0.99)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def trace_hash(spans: SpanBatch) -> np.ndarray:
    """One 64-bit number per trace for membership tests; a collision only makes a caller
    look at one trace more, never links spans (:func:`link` compares exact ids)."""
    return spans.trace_hi ^ (spans.trace_lo * _MIX)


def _span_keys(spans: SpanBatch) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 keys of (trace, span id) and of (trace, parent id), from dense codes."""
    n = len(spans)
    traces = np.empty(n, dtype=[("h", "<u8"), ("l", "<u8")])
    traces["h"], traces["l"] = spans.trace_hi, spans.trace_lo
    _, tcode = np.unique(traces, return_inverse=True)
    ids, icode = np.unique(np.concatenate([spans.span, spans.parent]), return_inverse=True)
    tcode = tcode.astype(np.int64).reshape(-1)
    icode = icode.astype(np.int64).reshape(-1)
    return tcode * len(ids) + icode[:n], tcode * len(ids) + icode[n:]


def first_occurrences(spans: SpanBatch) -> np.ndarray:
    """Mask of the first span of each (trace, span id): later copies are duplicates."""
    own, _ = _span_keys(spans)
    keep = np.zeros(len(spans), dtype=bool)
    keep[np.unique(own, return_index=True)[1]] = True
    return keep


def link(spans: SpanBatch) -> np.ndarray:
    """The row of each span's parent, -1 for roots (spans must be unique)."""
    if not len(spans):
        return np.empty(0, dtype=np.int64)
    own, want = _span_keys(spans)
    order = np.argsort(own, kind="stable")
    sorted_own = own[order]
    pos = np.minimum(np.searchsorted(sorted_own, want), len(own) - 1)
    found = (sorted_own[pos] == want) & (spans.parent != 0) & (spans.parent != spans.span)
    return np.where(found, order[pos], -1)


def entry_mask(spans: SpanBatch, parent_row: np.ndarray, service_of: np.ndarray
               ) -> np.ndarray:
    """Entry spans (see the module doc); ``service_of`` maps instance codes to services."""
    svc = service_of[spans.inst]
    parent_svc = np.where(parent_row >= 0, svc[np.maximum(parent_row, 0)], -1)
    kind = spans.kind
    return (kind == KIND_SERVER) | (kind == KIND_CONSUMER) | (
        ((kind == KIND_UNSPECIFIED) | (kind == KIND_INTERNAL)) & (parent_svc != svc))


def self_times(spans: SpanBatch, parent_row: np.ndarray,
               service_of: np.ndarray | None = None) -> np.ndarray:
    """Self time in ns: duration minus the union of the children's (clipped) intervals; -1
    for a client span of a call to another service (see the module doc) when
    ``service_of`` (instance code -> service code) is given."""
    own = _self_times(spans, parent_row)
    if service_of is None:
        return own
    child = np.flatnonzero(parent_row >= 0)
    svc = service_of[spans.inst]
    remote = child[svc[parent_row[child]] != svc[child]]
    calls_out = np.zeros(len(spans), dtype=bool)
    calls_out[parent_row[remote]] = True
    calls_out &= (spans.kind != KIND_SERVER) & (spans.kind != KIND_CONSUMER)
    return np.where(calls_out, -1, own)


def _self_times(spans: SpanBatch, parent_row: np.ndarray) -> np.ndarray:
    dur = spans.end - spans.start
    child = np.flatnonzero(parent_row >= 0)
    if not len(child):
        return dur
    p = parent_row[child]
    ps, pe = spans.start[p], spans.end[p]
    cs = np.clip(spans.start[child], ps, pe)
    ce = np.maximum(np.clip(spans.end[child], ps, pe), cs)
    rs, re = cs - ps, ce - ps  # relative to the parent's start: 0 .. its duration
    order = np.lexsort((rs, p))
    p, rs, re = p[order], rs[order], re[order]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    covered = np.zeros(len(p), dtype=np.int64)
    # The union per parent in one pass: a running maximum of the interval ends, kept from
    # leaking between parents by offsetting each parent's intervals past the previous ones.
    # Blocks of parents keep the offsets inside int64.
    width = int(re.max()) + 1
    per_block = max(1, (1 << 62) // width)
    group = np.cumsum(np.r_[True, p[1:] != p[:-1]]) - 1
    for lo in range(0, len(starts), per_block):
        a = starts[lo]
        b = starts[lo + per_block] if lo + per_block < len(starts) else len(p)
        off = (group[a:b] - group[a]) * width
        s, e = rs[a:b] + off, re[a:b] + off
        reach = np.maximum.accumulate(e)
        before = np.r_[s[0], reach[:-1]]
        covered[a:b] = np.maximum(0, e - np.maximum(s, before))
    union = np.zeros(len(spans), dtype=np.int64)
    union[p[starts]] = np.add.reduceat(covered, starts)
    return dur - union


def call_gaps(spans: SpanBatch, parent_row: np.ndarray, entry: np.ndarray,
              service_of: np.ndarray) -> np.ndarray:
    """The call gap in ns of each span (see the module doc); -1 where there is none."""
    gap = np.full(len(spans), -1, dtype=np.int64)
    child = np.flatnonzero(parent_row >= 0)
    if not len(child):
        return gap
    children = np.bincount(parent_row[child], minlength=len(spans))
    svc = service_of[spans.inst]
    p = parent_row[child]
    ok = entry[child] & (svc[p] != svc[child]) & (children[p] == 1)
    c, p = child[ok], p[ok]
    gap[c] = np.maximum(0, (spans.end[p] - spans.start[p]) - (spans.end[c] - spans.start[c]))
    return gap


@dataclass
class Cells:
    """Statistics per cell: (instance, operation or -1 for the whole service, bucket)."""

    inst: np.ndarray
    op: np.ndarray
    bucket: np.ndarray  # bucket number: start // step
    spans: np.ndarray  # spans of the cell
    entries: np.ndarray  # its entry spans
    errors: np.ndarray  # its entry spans with error status
    latency: dict[str, np.ndarray]  # mean, p50, p90, p99 of entry durations (s; NaN: none)
    self_time: dict[str, np.ndarray]  # mean, p90 of its spans' self times (s; NaN: none)
    gap: dict[str, np.ndarray]  # mean, p90 of its call gaps (s; NaN: no gap)

    def __len__(self) -> int:
        return len(self.inst)


def cell_stats(spans: SpanBatch, bucket: np.ndarray, entry: np.ndarray,
               self_ns: np.ndarray, gap_ns: np.ndarray) -> Cells:
    """Per-service (``op`` -1) and per-operation statistics of every cell the spans touch."""
    n_ops = max(len(spans.operations), 1)
    b0 = int(bucket.min()) if len(bucket) else 0
    nb = int(bucket.max()) - b0 + 2 if len(bucket) else 1
    rel = bucket - b0
    service_key = spans.inst * nb + rel
    op_key = (spans.inst * (n_ops + 1) + spans.op + 1) * nb + rel
    parts = []
    for key, by_op in ((service_key, False), (op_key, True)):
        all_k, all_n, _, _ = _grouped(key, self_ns, ())
        self_time = _mean_p90(key, self_ns, all_k)
        ent_k, ent_n, ent_sum, ent_q = _grouped(key[entry], (spans.end - spans.start)[entry],
                                                QUANTILES)
        err_k, err_n = np.unique(key[entry & (spans.status == STATUS_ERROR)],
                                 return_counts=True)
        at = np.searchsorted(all_k, ent_k)  # entry cells are a subset of all cells
        entries = np.zeros(len(all_k), dtype=np.int64)
        entries[at] = ent_n
        errors = np.zeros(len(all_k), dtype=np.int64)
        errors[np.searchsorted(all_k, err_k)] = err_n
        lat = {"mean": _nan(len(all_k))} | {f"p{round(q * 100)}": _nan(len(all_k))
                                            for q in QUANTILES}
        lat["mean"][at] = ent_sum / ent_n / 1e9
        for q, values in ent_q.items():
            lat[f"p{round(q * 100)}"][at] = values / 1e9
        gap = _mean_p90(key, gap_ns, all_k)
        rest, bucket_rel = np.divmod(all_k, nb)
        inst, op = np.divmod(rest, n_ops + 1) if by_op else (rest, np.zeros_like(rest))
        parts.append(Cells(inst, op - 1, bucket_rel + b0, all_n, entries, errors, lat,
                           self_time, gap))
    a, b = parts

    def both(f: str) -> np.ndarray:
        return np.concatenate([getattr(a, f), getattr(b, f)])

    return Cells(both("inst"), both("op"), both("bucket"), both("spans"), both("entries"),
                 both("errors"),
                 {k: np.concatenate([a.latency[k], b.latency[k]]) for k in a.latency},
                 {k: np.concatenate([a.self_time[k], b.self_time[k]]) for k in a.self_time},
                 {k: np.concatenate([a.gap[k], b.gap[k]]) for k in a.gap})


def _mean_p90(keys: np.ndarray, values_ns: np.ndarray, cells: np.ndarray
              ) -> dict[str, np.ndarray]:
    """Mean and p90 in seconds of the values (ns, -1: none) per cell of ``cells`` (sorted
    keys); NaN for a cell without values."""
    has = values_ns >= 0
    k, n, total, q = _grouped(keys[has], values_ns[has], (0.9,))
    at = np.searchsorted(cells, k)
    out = {"mean": _nan(len(cells)), "p90": _nan(len(cells))}
    out["mean"][at] = total / np.maximum(n, 1) / 1e9
    out["p90"][at] = q[0.9] / 1e9
    return out


def _grouped(keys: np.ndarray, values: np.ndarray, qs: tuple[float, ...]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[float, np.ndarray]]:
    """Sorted unique keys, counts, sums and quantiles (linear interpolation between the
    closest ranks, as numpy.quantile's default) of ``values`` per key."""
    if not len(keys):
        empty = np.empty(0, dtype=np.float64)
        return np.empty(0, np.int64), np.empty(0, np.int64), empty, {q: empty for q in qs}
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    counts = np.diff(np.r_[starts, len(k)])
    sums = np.add.reduceat(v, starts).astype(np.float64)
    quantiles = {}
    for q in qs:
        pos = (counts - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        low, high = v[starts + lo].astype(np.float64), v[starts + hi].astype(np.float64)
        quantiles[q] = low + (high - low) * (pos - lo)
    return k[starts], counts, sums, quantiles


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


@dataclass
class Calls:
    """Calls aggregated per (caller, callee) key: count, errors, first and last start."""

    caller: np.ndarray
    callee: np.ndarray
    count: np.ndarray
    errors: np.ndarray
    first: np.ndarray  # ns
    last: np.ndarray  # ns


def calls(spans: SpanBatch, parent_row: np.ndarray, rows: np.ndarray, key: np.ndarray,
          service: np.ndarray) -> Calls:
    """The calls made to the child spans at ``rows``, grouped by (caller key, callee key):
    ``key`` maps each span to its service or pod code (-1: leave it out); a call needs a
    parent of another ``service``."""
    child = rows[parent_row[rows] >= 0]
    parent = parent_row[child]
    a, b = key[parent], key[child]
    keep = (service[parent] != service[child]) & (a >= 0) & (b >= 0)
    child, a, b = child[keep], a[keep], b[keep]
    if not len(child):
        e = np.empty(0, dtype=np.int64)
        return Calls(e, e, e, e, e, e)
    width = int(max(a.max(), b.max())) + 1
    pairs, inv = np.unique(a * width + b, return_inverse=True)
    inv = inv.reshape(-1)
    count = np.bincount(inv, minlength=len(pairs))
    errors = np.bincount(inv, weights=spans.status[child] == STATUS_ERROR,
                         minlength=len(pairs)).astype(np.int64)
    first = np.full(len(pairs), np.iinfo(np.int64).max)
    last = np.full(len(pairs), np.iinfo(np.int64).min)
    np.minimum.at(first, inv, spans.start[child])
    np.maximum.at(last, inv, spans.start[child])
    caller, callee = np.divmod(pairs, width)
    return Calls(caller, callee, count, errors, first, last)


@dataclass
class ErrorCounts:
    """Error spans per (instance, bucket, status message code; -1: none)."""

    inst: np.ndarray
    bucket: np.ndarray
    msg: np.ndarray
    count: np.ndarray
    operations: list[list[int]]  # operation codes of the group's error spans


def error_counts(spans: SpanBatch, bucket: np.ndarray) -> ErrorCounts:
    err = np.flatnonzero(spans.status == STATUS_ERROR)
    keys = np.stack([spans.inst[err], bucket[err], spans.msg[err]], axis=1)
    if not len(err):
        e = np.empty(0, dtype=np.int64)
        return ErrorCounts(e, e, e, e, [])
    groups, inv, count = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    ops: list[set[int]] = [set() for _ in range(len(groups))]
    for g, o in zip(inv.tolist(), spans.op[err].tolist(), strict=True):
        ops[g].add(o)
    return ErrorCounts(groups[:, 0], groups[:, 1], groups[:, 2], count,
                       [sorted(s) for s in ops])
