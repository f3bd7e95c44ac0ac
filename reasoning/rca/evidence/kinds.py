"""What a metric measures, read from its name: which way is harmful, whether a deviation is
the entity's own or can be inherited from what it depends on, and its unit's scale floor.

RCA sees metrics it has never seen (every system names them its own way), so it reads only
what metric names commonly say — ``cpu``, ``latency``, ``error``, ``success``, a unit
suffix — matched case-insensitively as substrings, first rule first (:data:`RULES`). The
roles:

- **own** evidence cannot be inherited from a dependency: resource use (CPU, memory, ...),
  the exclusive (self) time of spans, and the gap callers see before a service's server
  spans start (network and queueing on the way to it: ``trace_call_gap_seconds``);
- **propagating** evidence travels up the call graph unchanged in kind: a slow callee makes
  its callers slow, a failing one makes them fail. It counts for an entity only as far as
  its dependencies do not show the same (see :mod:`reasoning.rca.evidence.origin`);
- **waiting**: client-side latency (``grpc_client_handling_seconds``, a pod's client
  latency) is time an entity spends waiting on what it calls: evidence about its
  dependencies, not about itself. It never counts as origin evidence, but it explains the
  same entity's own latency;
- **neutral**: load and traffic (request rates, bytes) change as often because of a fault
  elsewhere as because of one here, and have no harmful direction: not evidence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKind:
    name: str  # resource|self|gap|client|latency|errors|availability|traffic|other
    role: str  # own | propagating | waiting | neutral
    sign: int  # +1: up is harmful, -1: down is harmful, 0: no harmful direction
    floor: float  # the unit's scale floor (0: none known)


# (pattern, kind name, role, sign), first match wins; patterns are regular expressions on
# the lower-case metric name.
RULES: tuple[tuple[str, str, str, int], ...] = (
    (r"^log_template_count$", "logs", "propagating", +1),
    (r"self_?time|exclusive", "self", "own", +1),
    (r"client.*(latency|duration|delay|time)|(latency|duration|delay).*client", "client",
     "waiting", +1),
    (r"call_?gap", "gap", "own", +1),
    (r"availab|success|uptime|^up$|healthy", "availability", "propagating", -1),
    (r"error|fail|fault|exception|timeout|5xx|reject|retrans|loss|drop", "errors",
     "propagating", +1),
    (r"latency|duration|delay|rtt|response_?time|jitter|wait", "latency", "propagating", +1),
    (r"cpu|memory|mem_|heap|gc_|disk|gpu|npu|load\d|saturat|utili[sz]|usage|throttl|oom|"
     r"restart|temperature|swap|file_?desc|fd_", "resource", "own", +1),
    (r"request|workload|ops|throughput|bytes|packets|receive|transmit|rate|qps|calls|"
     r"count|total", "traffic", "neutral", 0),
)
_COMPILED = tuple((re.compile(p), n, r, s) for p, n, r, s in RULES)
OTHER = ("other", "neutral", 0)


def unit_floor(metric: str, labels: Mapping[str, str]) -> float:
    """The smallest change that means anything in the metric's unit: 1 percentage point
    for percentages, 0.01 for ratios, 1 ms for durations; 0 when the unit is unknown."""
    name = metric.lower()
    unit = str(labels.get("unit", "")).lower()
    if "%" in name or "percent" in name or unit in ("%", "percent"):
        return 1.0
    if name.endswith(("_ratio", "ratio")) or unit == "ratio":
        return 0.01
    if "(ms)" in name or name.endswith(("_ms", "_milliseconds")) or unit == "ms":
        return 1.0
    if "(s)" in name or name.endswith("_seconds") or "_seconds_" in name or unit == "s":
        return 0.001
    return 0.0


CLIENT_SIDE = {("reporter", "source"), ("side", "client"), ("span_kind", "client"),
               ("kind", "client")}


def classify(metric: str, labels: Mapping[str, str] | None = None) -> MetricKind:
    """The kind of ``metric`` (see :data:`RULES`) with its unit floor; a latency reported by
    the calling side (labels :data:`CLIENT_SIDE`, such as Istio's ``reporter="source"``)
    is ``client``."""
    name = metric.lower()
    labels = labels or {}
    if any(str(labels.get(k, "")).lower() == v for k, v in CLIENT_SIDE) and \
            re.search(r"latency|duration|delay|time", name):
        return MetricKind("client", "waiting", +1, unit_floor(metric, labels))
    for pattern, kind, role, sign in _COMPILED:
        if pattern.search(name):
            return MetricKind(kind, role, sign, unit_floor(metric, labels))
    return MetricKind(*OTHER, unit_floor(metric, labels))
