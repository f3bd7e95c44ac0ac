"""RCA on the Nezha Online Boutique benchmark (Yu et al., ESEC/FSE 2023; MIT): 56 injected
faults, the front end's SLO alert as the only symptom, through AutoCNC's public interfaces
with the default configuration.

Every input is converted into a documented format (:mod:`bench.nezha_data`) and sent to a
running ``autocnc serve`` (``POST /v1/ingest/{kind}``); each fault's alert is then analysed
by ``POST /v1/rca`` (``{"alerts": [...], "scope": ..., "limit": "all"}``), so the engine
sees what any user's data would give it: no dataset path, no service names, no fitted
weights. Two stores are built: **metrics** (topology + metrics) and **all** (+ traces + the
few log minutes this copy has), to show what each source adds. Each is run with the
**trailing** reference (the default: the hour before the incident, cleaned of anomalous
points) and with the **explicit** fault-free reference of Nezha's protocol (the day's
fault-free stretch after its last injection; ``reference`` in the request).

**Scoring** (Nezha's service-level AS@k, FORMAT.md): a candidate hits when its component
(its members: the service, its Kubernetes service, deployment, pods, containers) names the
injected pod's service; ties count against the method (the truth goes last among equal
scores); a truth that is not ranked at all counts as a miss at every k. Avg@5 is the mean of
AS@1..5. Reported overall and per fault type, with the sources each case had.

**Baselines** (same run, same converted data, same window and reference): N-sigma on the
metrics — per service the largest ``|x - mean_ref| / std_ref`` of its series in the window
— and N-sigma + traces, which adds each service's per-minute mean span duration.

Usage: ``python bench/rca_nezha.py [--data-dir DIR] [--alert-delay 60] [--detail]``
(``--data-dir`` keeps the ingested stores for the next run; ~10 min on 2 cores the first
time, mostly trace ingest).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nezha_data import (  # noqa: E402
    DAYS,
    NEZHA,
    SCOPE,
    Fault,
    alert,
    fault_free,
    faults,
    inputs,
    service_of,
    sources_of,
    trace_files,
)
from server import running_server  # noqa: E402

STORES = {"metrics": (False, False), "all": (True, True)}
MARK = "nezha-ingested.json"
AS_OF = "2022-08-22T00:00:00Z"
WINDOW_S = 300  # the baselines' window either side of the alert (the engine's default)
TRAILING_S = 3600  # and their trailing reference (the engine's default)


# -- ingest and analysis through the API ---------------------------------------------------------

def ingest(base: str, root: Path, with_traces: bool, with_logs: bool) -> dict[str, Any]:
    counts: dict[str, int] = {}
    t = time.perf_counter()
    for kind, name, body in inputs(root, with_traces, with_logs):
        r = httpx.post(f"{base}/v1/ingest/{kind}", content=body, timeout=600,
                       params={"scope": SCOPE, "name": name, "as_of": AS_OF})
        if r.status_code != 200:
            raise SystemExit(f"ingest {kind} {name}: HTTP {r.status_code}: {r.text[:500]}")
        report = r.json()
        if report["rejected"]:
            raise SystemExit(f"ingest {kind} {name}: {report['rejections'][:3]}")
        counts[kind] = counts.get(kind, 0) + int(report["records"])
    return {"records": counts, "seconds": round(time.perf_counter() - t, 1)}


def analyse(base: str, fault: Fault, delay_s: float,
            reference: tuple[datetime, datetime] | None) -> tuple[dict[str, Any], float]:
    body: dict[str, Any] = {"alerts": [alert(fault, delay_s)], "scope": SCOPE,
                            "limit": "all"}
    if reference is not None:
        body["reference"] = {"start": reference[0].isoformat(),
                             "end": reference[1].isoformat()}
    t = time.perf_counter()
    r = httpx.post(f"{base}/v1/rca", json=body, timeout=120)
    if r.status_code != 200:
        raise SystemExit(f"rca {fault.name}: HTTP {r.status_code}: {r.text[:500]}")
    return r.json(), time.perf_counter() - t


def names_of(candidate: Mapping[str, Any]) -> set[str]:
    """The service names a candidate's component members carry."""
    out: set[str] = set()
    for iri in candidate.get("component") or [candidate["entity"]]:
        for part in unquote(iri.rsplit("/", 1)[1]).split("/"):
            out.update({part, service_of(part)})
    return out


def rank_of_truth(candidates: Sequence[Mapping[str, Any]], service: str) -> int | None:
    """1-based rank of the first candidate naming ``service``, ties against it."""
    hit = next((c for c in candidates if service in names_of(c)), None)
    if hit is None:
        return None
    return sum(1 for c in candidates if c["score"] >= hit["score"])


# -- baselines ----------------------------------------------------------------------------------

@dataclass
class Series:
    ts: np.ndarray  # seconds
    x: np.ndarray


def baseline_series(root: Path, with_traces: bool) -> dict[tuple[str, str], list[Series]]:
    """(day, service) -> its metric series (and per-minute mean span duration)."""
    out: dict[tuple[str, str], list[Series]] = {}
    for day in DAYS:
        for path in sorted((root / "rca_data" / day / "metric").glob("*_metric.csv")):
            rows = list(csv.DictReader(path.open()))
            svc = service_of(rows[0]["PodName"]) if rows else ""
            ts = np.array([float(r["TimeStamp"]) for r in rows])
            for col in rows[0] if rows else []:
                if col in ("Time", "TimeStamp", "PodName") or col.startswith("Node"):
                    continue
                x = np.array([float(r[col]) if r[col] else np.nan for r in rows])
                out.setdefault((day, svc), []).append(Series(ts, x))
        if not with_traces:
            continue
        sums: dict[tuple[str, float], list[float]] = {}
        for path in trace_files(root, day) + trace_files(root, day, construct=True):
            with gzip.open(path, "rt", newline="") as fh:
                spans = list(csv.DictReader(fh))
            svc_of = {s["SpanID"]: service_of(s["PodName"]) for s in spans}
            for s in spans:
                svc = service_of(s["PodName"])
                if svc_of.get(s["ParentID"]) == svc:
                    continue  # not an entry span of its service
                minute = int(s["StartTimeUnixNano"]) // 60_000_000_000 * 60.0
                acc = sums.setdefault((svc, minute), [0.0, 0.0])
                acc[0] += (int(s["EndTimeUnixNano"]) - int(s["StartTimeUnixNano"])) / 1e9
                acc[1] += 1
        per: dict[str, list[tuple[float, float]]] = {}
        for (svc, minute), (total, n) in sums.items():
            per.setdefault(svc, []).append((minute, total / n))
        for svc, pts in per.items():
            pts.sort()
            out.setdefault((day, svc), []).append(
                Series(np.array([p[0] for p in pts]), np.array([p[1] for p in pts])))
    return out


def n_sigma(series: Mapping[tuple[str, str], list[Series]], fault: Fault, delay_s: float,
            reference: tuple[datetime, datetime] | None) -> list[tuple[str, float]]:
    """Services by their largest |z| in the window, best first."""
    at = (fault.at + timedelta(seconds=delay_s)).timestamp()
    w0, w1 = at - WINDOW_S, at + WINDOW_S
    r0, r1 = ((reference[0].timestamp(), reference[1].timestamp()) if reference
              else (w0 - TRAILING_S, w0))
    scores = []
    for (day, svc), group in series.items():
        if day != fault.day:
            continue
        best = 0.0
        for s in group:
            ok = np.isfinite(s.x)
            ref = s.x[ok & (s.ts >= r0) & (s.ts < r1)]
            win = s.x[ok & (s.ts >= w0) & (s.ts <= w1)]
            if len(ref) < 5 or not len(win):
                continue
            z = np.abs(win - ref.mean()) / max(float(ref.std()), 1e-9)
            best = max(best, float(z.max()))
        scores.append((svc, best))
    return sorted(scores, key=lambda t: -t[1])


def baseline_rank(ranked: Sequence[tuple[str, float]], service: str) -> int | None:
    mine = dict(ranked).get(service)
    return None if mine is None else sum(1 for _, s in ranked if s >= mine)


# -- report -------------------------------------------------------------------------------------

def summary(ranks: Sequence[int | None]) -> dict[str, float]:
    hit = [[r is not None and r <= k for r in ranks] for k in range(1, 6)]
    ac = [sum(h) / len(ranks) for h in hit]
    return {"AS@1": ac[0], "AS@3": ac[2], "AS@5": ac[4], "Avg@5": sum(ac) / 5}


def show(title: str, ranks: Sequence[int | None], cases: Sequence[Fault]) -> None:
    s = summary(ranks)
    print(f"{title:<42} " + "  ".join(f"{k} {v:.3f}" for k, v in s.items()))
    kinds = sorted({c.kind for c in cases})
    parts = []
    for kind in kinds:
        sub = [r for r, c in zip(ranks, cases, strict=True) if c.kind == kind]
        parts.append(f"{kind} {summary(sub)['AS@1']:.2f}/{summary(sub)['AS@3']:.2f}"
                     f" (n={len(sub)})")
    print(f"{'':<42} by type AS@1/AS@3: " + "; ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=NEZHA)
    ap.add_argument("--data-dir", type=Path, help="keep the stores here (reused)")
    ap.add_argument("--alert-delay", type=float, default=60.0,
                    help="seconds from injection to the front end's alert")
    ap.add_argument("--detail", action="store_true", help="one line per fault")
    args = ap.parse_args()
    work = args.data_dir or Path(tempfile.mkdtemp(prefix="nezha-"))
    cases = faults(args.data)
    explicit = {day: fault_free(args.data, day) for day in DAYS}
    results: dict[str, list[int | None]] = {}
    latencies: list[float] = []
    tops: dict[str, list[str]] = {}
    try:
        for store, (with_traces, with_logs) in STORES.items():
            data_dir = work / store
            mark = data_dir / MARK
            env = {"PATH": "/usr/bin:/bin", "AUTOCNC_DATA_DIR": str(data_dir),
                   "AUTOCNC_STORE": "embedded", "HOME": str(Path.home())}
            with running_server(env) as base:
                if not mark.exists():
                    report = ingest(base, args.data, with_traces, with_logs)
                    mark.write_text(json.dumps(report))
                    print(f"ingested {store}: {report}")
                for mode in ("trailing", "explicit"):
                    key = f"{store}/{mode}"
                    ranks: list[int | None] = []
                    for fault in cases:
                        ref = explicit[fault.day] if mode == "explicit" else None
                        result, dt = analyse(base, fault, args.alert_delay, ref)
                        latencies.append(dt)
                        ranks.append(rank_of_truth(result["candidates"], fault.service))
                        top = result["candidates"][0] if result["candidates"] else None
                        tops.setdefault(key, []).append(
                            f"{sorted(names_of(top) - {'default'})[0] if top else '-'}")
                    results[key] = ranks
        for with_traces in (False, True):
            series = baseline_series(args.data, with_traces)
            for mode in ("trailing", "explicit"):
                key = f"n-sigma{' + traces' if with_traces else ''}/{mode}"
                results[key] = [baseline_rank(n_sigma(series, f, args.alert_delay,
                                                      explicit[f.day] if mode == "explicit"
                                                      else None), f.service) for f in cases]
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nNezha Online Boutique, {len(cases)} faults, service level, ties against the "
          f"method; alert {args.alert_delay:g} s after each injection")
    for key, ranks in results.items():
        show(key, ranks, cases)
    base_key = "n-sigma + traces/trailing"
    head = summary(results["all/trailing"])["AS@1"]
    peer = summary(results[base_key])["AS@1"]
    print(f"\nheadline (all sources, default trailing reference): AS@1 {head:.3f}; "
          f"x{head / peer:.2f} the {base_key} baseline ({peer:.3f})" if peer else "")
    lat = sorted(latencies)
    print(f"POST /v1/rca latency over {len(lat)} calls: p50 {statistics.median(lat) * 1000:.0f}"
          f" ms, p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.0f} ms")
    if args.detail:
        print("\nper fault: sources | rank metrics/trailing, all/trailing, all/explicit, "
              "n-sigma+traces | top of all/trailing")
        for i, f in enumerate(cases):
            src = sources_of(args.data, f)
            print(f"  {f.name:<48} traces {src['traceMinutes']} logs {src['logMinutes']} | "
                  + " ".join(str(results[k][i]) for k in
                             ("metrics/trailing", "all/trailing", "all/explicit", base_key))
                  + f" | {tops['all/trailing'][i]}")


if __name__ == "__main__":
    main()
