"""Spans as columns: what every trace parser produces and the derivations read.

A :class:`SpanBatch` holds spans of one scope as aligned numpy arrays. Identities are
numbers, not text: a trace id is two unsigned 64-bit halves, a span id one (the W3C / OTLP
widths, 16 and 8 bytes), so linking a span to its parent is an integer join. The texts a
span carries (service, pod, namespace, operation, status message) are interned once per
batch: the arrays hold codes into the batch's tables.

Parsers that see one span at a time (OTLP) add spans through :class:`SpanBuilder`, which
validates each and says why it refuses one; the span table parser builds the arrays column
by column and uses the vectorised :func:`hex_ids`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ingest.base import IngestError, Input

# OTLP's enum values, kept as they are on the wire.
KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = \
    range(6)
KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_UNSET, STATUS_OK, STATUS_ERROR = range(3)
STATUS_NAMES = ("unset", "ok", "error")
MAX_MESSAGE = 500  # characters of a status message kept (it names events)

Instance = tuple[str, str, str]  # (service, pod, namespace); "" when not known

_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


@dataclass
class SpanBatch:
    """Spans of one scope; ``parent`` 0 means none, times are Unix epoch nanoseconds."""

    trace_hi: np.ndarray  # uint64
    trace_lo: np.ndarray  # uint64
    span: np.ndarray  # uint64
    parent: np.ndarray  # uint64
    start: np.ndarray  # int64 ns
    end: np.ndarray  # int64 ns
    inst: np.ndarray  # int64 -> instances
    op: np.ndarray  # int64 -> operations
    kind: np.ndarray  # int8, KIND_*
    status: np.ndarray  # int8, STATUS_*
    msg: np.ndarray  # int64 -> messages, -1: none
    instances: list[Instance] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    COLUMNS = ("trace_hi", "trace_lo", "span", "parent", "start", "end", "inst", "op", "kind",
               "status", "msg")

    def __len__(self) -> int:
        return len(self.span)

    @classmethod
    def empty(cls) -> SpanBatch:
        u, i = np.empty(0, np.uint64), np.empty(0, np.int64)
        return cls(u, u, u, u, i, i, i, i, np.empty(0, np.int8), np.empty(0, np.int8), i)

    def take(self, rows: np.ndarray) -> SpanBatch:
        """The spans at ``rows`` (indexes or a mask), sharing the text tables."""
        return self.with_columns({c: getattr(self, c)[rows] for c in self.COLUMNS})

    def compacted(self) -> SpanBatch:
        """The same spans with text tables that hold only the texts they use."""
        inst, inst_codes = np.unique(self.inst, return_inverse=True)
        op, op_codes = np.unique(self.op, return_inverse=True)
        msg, msg_codes = np.unique(self.msg, return_inverse=True)
        has_none = int(len(msg) > 0 and msg[0] == -1)
        msg_codes = msg_codes.reshape(-1) - has_none
        cols = {c: getattr(self, c) for c in self.COLUMNS}
        cols.update(inst=inst_codes.reshape(-1), op=op_codes.reshape(-1), msg=msg_codes)
        return SpanBatch(**cols, instances=[self.instances[i] for i in inst],
                         operations=[self.operations[i] for i in op],
                         messages=[self.messages[i] for i in msg[has_none:]])

    def with_columns(self, cols: dict[str, np.ndarray]) -> SpanBatch:
        """A batch of ``cols`` (every name of ``COLUMNS``) with this batch's text tables."""
        return SpanBatch(cols["trace_hi"], cols["trace_lo"], cols["span"], cols["parent"],
                         cols["start"], cols["end"], cols["inst"], cols["op"], cols["kind"],
                         cols["status"], cols["msg"], self.instances, self.operations,
                         self.messages)


class SpanBuilder:
    """Collects spans one by one (OTLP parsing); :meth:`add` validates and interns."""

    def __init__(self) -> None:
        self._cols: dict[str, list[int]] = {c: [] for c in SpanBatch.COLUMNS}
        self._inst: dict[Instance, int] = {}
        self._ops: dict[str, int] = {}
        self._msgs: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._cols["span"])

    def add(self, trace_id: bytes, span_id: bytes, parent_id: bytes, instance: Instance,
            operation: str, start_ns: int, end_ns: int, kind: int, status: int,
            message: str) -> str | None:
        """Append one span; returns why it is refused instead (nothing appended)."""
        if not any(trace_id):
            return "missing trace id" if not trace_id else "trace id is all zeros"
        if len(trace_id) != 16:
            return f"trace id must be 16 bytes, got {len(trace_id)}"
        if not any(span_id):
            return "missing span id" if not span_id else "span id is all zeros"
        if len(span_id) != 8:
            return f"span id must be 8 bytes, got {len(span_id)}"
        if parent_id and len(parent_id) != 8:
            return f"parent span id must be 8 bytes, got {len(parent_id)}"
        if not instance[0]:
            return "missing service name"
        if not operation:
            return "missing span name (operation)"
        if start_ns <= 0 or end_ns <= 0:
            return "missing start or end time"
        if max(start_ns, end_ns) >= 1 << 63:
            return "start or end time out of range (after the year 2262)"
        if end_ns < start_ns:
            return "end before start"
        if not 0 <= kind < len(KIND_NAMES):
            return f"unknown span kind {kind}"
        if not 0 <= status < len(STATUS_NAMES):
            return f"unknown status code {status}"
        c = self._cols
        c["trace_hi"].append(int.from_bytes(trace_id[:8], "big"))
        c["trace_lo"].append(int.from_bytes(trace_id[8:], "big"))
        c["span"].append(int.from_bytes(span_id, "big"))
        c["parent"].append(int.from_bytes(parent_id, "big") if parent_id else 0)
        c["start"].append(start_ns)
        c["end"].append(end_ns)
        c["inst"].append(_intern(self._inst, instance))
        c["op"].append(_intern(self._ops, operation))
        c["kind"].append(kind)
        c["status"].append(status)
        c["msg"].append(_intern(self._msgs, message[:MAX_MESSAGE]) if message else -1)
        return None

    def build(self) -> SpanBatch:
        c = self._cols
        u64 = {k: np.array(c[k], dtype=np.uint64) for k in ("trace_hi", "trace_lo", "span",
                                                            "parent")}
        i64 = {k: np.array(c[k], dtype=np.int64) for k in ("start", "end", "inst", "op",
                                                           "msg")}
        return SpanBatch(**u64, **i64, kind=np.array(c["kind"], dtype=np.int8),
                         status=np.array(c["status"], dtype=np.int8),
                         instances=list(self._inst), operations=list(self._ops),
                         messages=list(self._msgs))


def _intern(table: dict, key: object) -> int:
    code = table.get(key)
    if code is None:
        code = table[key] = len(table)
    return code


def head_bytes(inp: Input, n: int) -> bytes:
    """The first ``n`` bytes of an input (a format's magic number)."""
    if inp.path is None:
        return (inp.data or b"")[:n]
    with inp.path.open("rb") as fh:
        return fh.read(n)


def hex_bytes(text: object, width: int) -> bytes | None:
    """The bytes of a hex id (OTLP JSON), None when it is not hex of ``width`` bytes."""
    if not isinstance(text, str) or len(text) != 2 * width:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def hex_ids(texts: np.ndarray, lengths: np.ndarray, width: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised hex parsing for a table column: ``texts`` is an ``(n, 2*width)`` uint8
    array of ASCII digits, left-padded with ``0`` to the full width, and ``lengths`` the
    unpadded lengths. Returns ``(width // 8, n)`` uint64 words (big-endian order) and a
    mask of the bad ids (not hex, empty, or longer than the width)."""
    nibbles = _HEX[texts]
    bad = (nibbles == 255).any(axis=1) | (lengths == 0) | (lengths > 2 * width)
    nibbles = np.where(nibbles == 255, 0, nibbles).astype(np.uint64)
    words = []
    for w in range(width // 8):
        part = nibbles[:, w * 16:(w + 1) * 16]
        shifts = np.arange(60, -4, -4, dtype=np.uint64)
        words.append((part << shifts).sum(axis=1, dtype=np.uint64))
    return np.array(words, dtype=np.uint64).reshape(width // 8, len(texts)), bad


class TraceInputError(IngestError):
    """A whole trace input that cannot be read (not OTLP, not a span table): 400 on the
    receiver, 422 on ``/v1/ingest/traces``, exit 1 on the command line."""


class NotTracesError(TraceInputError):
    """Valid JSON that is no trace request (a ``package.json`` in a scanned directory):
    skipped when the format was detected, an error when it was given (the receiver)."""


class NoScopeError(TraceInputError):
    """Spans whose scope is unknown: no ``--scope`` / ``?scope=`` and no resource attribute
    ``k8s.cluster.name``. Never defaulted: the scope is part of every IRI."""
