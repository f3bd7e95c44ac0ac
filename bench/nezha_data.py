"""The Nezha Online Boutique RCA benchmark (Yu et al., ESEC/FSE 2023, MIT) converted into
AutoCNC's documented input formats; see ``../shared/data/nezha-online-boutique/FORMAT.md``.

What each source becomes (the product sees only these files):

- **topology**: the Online Boutique Kubernetes manifests (``../shared/data/topology/
  online-boutique``) and the dataset's own call graph ``metric/dependency.csv`` as a
  service dependency CSV (``caller,callee``; the rows whose target is a node address are
  where a service runs, not a call, and are left out);
- **metrics**: every ``<pod>_metric.csv`` as the long format, one row per sample: the
  column name is the metric name (``CpuUsageRate(%)``), labels ``pod`` and ``namespace``;
  the ``Node*`` columns describe the pod's node and get the label ``node`` (its address,
  from the call graph's node rows) instead. ``front_service.csv`` (the front end's SLI)
  becomes ``frontend_<column>`` with ``service=frontend``;
- **traces**: each ``HH_MM_trace.csv.gz`` as a span table (``trace_id``, ``span_id``,
  ``parent_span_id``, ``service`` = the pod name without its last two ``-`` parts, ``pod``,
  ``namespace``, ``operation``, ``start_unix_nano``, ``end_unix_nano``);
- **logs**: each ``HH_MM_log.csv`` as JSON lines (``time``, ``pod``, ``namespace``,
  ``level``, ``message``, ``trace_id``), the message unwrapped from the container's JSON;
- **alerts**: one Alertmanager v4 notification per fault, the front end's SLO alert
  (``alertname=FrontendSLOViolation``, ``service=frontend``) firing ``alert_delay`` seconds
  after the injection — the alert names the front end, never the fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NEZHA = SHARED / "nezha-online-boutique"
MANIFESTS = SHARED / "topology" / "online-boutique" / "kubernetes-manifests.yaml"
DAYS = ("2022-08-22", "2022-08-23")
NAMESPACE = "default"
SCOPE = "nezha/online-boutique"
_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def service_of(pod: str) -> str:
    """``cartservice-579f59597d-wc2lz`` → ``cartservice`` (FORMAT.md's rule)."""
    return pod.rsplit("-", 2)[0]


@dataclass(frozen=True)
class Fault:
    day: str
    at: datetime  # injection time (UTC)
    pod: str
    kind: str  # cpu_contention | network_delay | cpu_consumed | return | exception

    @property
    def service(self) -> str:
        return service_of(self.pod)

    @property
    def name(self) -> str:
        return f"{self.at:%Y-%m-%dT%H:%M:%S} {self.service} {self.kind}"


def faults(root: Path = NEZHA) -> list[Fault]:
    out = []
    for day in DAYS:
        doc = json.loads((root / "rca_data" / day / f"{day}-fault_list.json").read_text())
        for hour in sorted(doc):
            for f in doc[hour]:
                at = datetime.strptime(f["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                out.append(Fault(day, at, f["inject_pod"], f["inject_type"]))
    return sorted(out, key=lambda f: f.at)


def fault_free(root: Path, day: str) -> tuple[datetime, datetime]:
    """The day's fault-free stretch (the reference of Nezha's protocol): from 15 minutes
    after its last injection for two hours."""
    last = max(f.at for f in faults(root) if f.day == day)
    return last + timedelta(minutes=15), last + timedelta(minutes=135)


# -- topology -----------------------------------------------------------------------------------

def node_of(root: Path, day: str) -> dict[str, str]:
    """service -> the address of its node (the call graph's address rows)."""
    out = {}
    for row in csv.DictReader((root / "rca_data" / day / "metric" / "dependency.csv").open()):
        if _ADDRESS.match(row["Target"]):
            out[row["Source"]] = row["Target"]
    return out


def dependency_csv(root: Path = NEZHA) -> bytes:
    """The call graph of both days as ``caller,callee`` rows (service to service)."""
    pairs = set()
    for day in DAYS:
        for row in csv.DictReader((root / "rca_data" / day / "metric" /
                                   "dependency.csv").open()):
            if not _ADDRESS.match(row["Target"]):
                pairs.add((row["Source"], row["Target"]))
    return ("caller,callee\n" + "".join(f"{a},{b}\n" for a, b in sorted(pairs))).encode()


# -- metrics ------------------------------------------------------------------------------------

def metrics_csv(root: Path, day: str) -> bytes:
    """One day's pod metrics and the front end's SLI in the long CSV format."""
    nodes = node_of(root, day)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["timestamp", "metric", "value", "labels"])
    folder = root / "rca_data" / day / "metric"
    for path in sorted(folder.glob("*_metric.csv")):
        with path.open() as fh:
            for row in csv.DictReader(fh):
                pod = row["PodName"]
                for col, value in row.items():
                    if col in ("Time", "TimeStamp", "PodName") or value in ("", None):
                        continue
                    if col.startswith("Node"):
                        node = nodes.get(service_of(pod))
                        if node is None:
                            continue
                        labels = f"node={node}"
                    else:
                        labels = f"pod={pod};namespace={NAMESPACE}"
                    w.writerow([row["TimeStamp"], col, value, labels])
    with (folder / "front_service.csv").open() as fh:
        for row in csv.DictReader(fh):
            for col, value in row.items():
                if col in ("Time", "TimeStamp", "ServiceName") or value in ("", None):
                    continue
                w.writerow([row["TimeStamp"], f"frontend_{col}", value,
                            f"service=frontend;namespace={NAMESPACE}"])
    return out.getvalue().encode()


# -- traces and logs ----------------------------------------------------------------------------

SPAN_COLUMNS = ["trace_id", "span_id", "parent_span_id", "service", "pod", "namespace",
                "operation", "start_unix_nano", "end_unix_nano"]


def trace_files(root: Path, day: str, *, construct: bool = False) -> list[Path]:
    base = root / ("construct_data" if construct else "rca_data") / day / "trace"
    return sorted(base.glob("*_trace.csv.gz")) if base.is_dir() else []


def span_table(path: Path) -> bytes:
    """One Nezha trace minute as a span table (CSV)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(SPAN_COLUMNS)
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            pod = row["PodName"]
            parent = "" if row["ParentID"] == "root" else row["ParentID"]
            w.writerow([row["TraceID"], row["SpanID"], parent, service_of(pod), pod,
                        NAMESPACE, row["OperationName"], row["StartTimeUnixNano"],
                        row["EndTimeUnixNano"]])
    return out.getvalue().encode()


def log_files(root: Path, day: str) -> list[Path]:
    base = root / "rca_data" / day / "log"
    return sorted(base.glob("*_log.csv")) if base.is_dir() else []


def log_lines(path: Path) -> bytes:
    """One Nezha log minute as JSON lines."""
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            message, level = _unwrap(row["Log"])
            out.append(json.dumps({"time": int(row["TimeUnixNano"]), "pod": row["PodName"],
                                   "namespace": NAMESPACE, "level": level,
                                   "message": message, "trace_id": row["TraceID"]}))
    return ("\n".join(out) + "\n").encode()


def _unwrap(raw: str) -> tuple[str, str]:
    """The message and level inside a container log line (JSON in JSON, or text)."""
    try:
        outer = json.loads(raw)
        inner: Any = outer.get("log", raw) if isinstance(outer, dict) else raw
        inner = json.loads(inner) if isinstance(inner, str) and inner.lstrip().startswith(
            "{") else inner
    except ValueError:
        return raw.strip(), "info"
    if isinstance(inner, dict):
        return str(inner.get("message", inner)).strip(), str(inner.get("severity", "info"))
    return str(inner).strip(), "info"


# -- alerts -------------------------------------------------------------------------------------

def alert(fault: Fault, delay_s: float) -> dict[str, Any]:
    """The front end's SLO alert for ``fault`` (webhook alert object)."""
    at = fault.at + timedelta(seconds=delay_s)
    return {"status": "firing",
            "labels": {"alertname": "FrontendSLOViolation", "service": "frontend",
                       "severity": "critical"},
            "annotations": {"summary": "frontend latency or success rate violates its SLO"},
            "startsAt": at.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            "fingerprint": f"nezha-{fault.at:%Y%m%d%H%M%S}"}


def sources_of(root: Path, fault: Fault, before: int = 2, after: int = 3
               ) -> dict[str, int]:
    """How many trace and log minute files lie within ``before``..``after`` minutes of the
    injection (the data this copy has for the case)."""
    minutes = {(fault.at + timedelta(minutes=k)).strftime("%H_%M")
               for k in range(-before, after + 1)}
    return {"traceMinutes": sum(p.name[:5] in minutes for p in trace_files(root, fault.day)),
            "logMinutes": sum(p.name[:5] in minutes for p in log_files(root, fault.day))}


def inputs(root: Path, with_traces: bool, with_logs: bool
           ) -> Iterator[tuple[str, str, bytes]]:
    """``(kind, name, body)`` of every input, in ingest order."""
    yield "topology", "kubernetes-manifests.yaml", MANIFESTS.read_bytes()
    yield "topology", "dependencies.csv", dependency_csv(root)
    for day in DAYS:
        yield "metrics", f"{day}-metrics.csv", metrics_csv(root, day)
    if with_traces:
        for day in DAYS:
            for construct in (False, True):
                for path in trace_files(root, day, construct=construct):
                    name = f"{day}{'-construct' if construct else ''}-{path.name[:5]}.csv"
                    yield "traces", name, span_table(path)
    if with_logs:
        for day in DAYS:
            for path in log_files(root, day):
                yield "logs", f"{day}-{path.name[:5]}.jsonl", log_lines(path)
