"""How long ``autocnc`` takes to answer, as a script sees it: wall time of whole processes.

Three cases, each the median of ``--runs`` runs (min and max beside it):

- ``autocnc --help``: the cost of starting the command line at all (target <= 0.5 s);
- ``autocnc query cypher ... -o json`` against a running ``autocnc serve``: the client path,
  which imports httpx and the output module, nothing of the engine (target <= 1 s);
- the same query and ``autocnc status -o json`` standalone, with no server: the command
  opens the stores itself (read-only), which costs what opening them costs.

The data: the demo CNC (``ingest.demo``, seed 7) in a fresh embedded data directory.

    python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import running_server  # noqa: E402

AUTOCNC = str(Path(sys.executable).with_name("autocnc"))
QUERY = "MATCH (n:Entity) WHERE n.kind = 'Router' RETURN n.iri AS iri ORDER BY iri LIMIT 5"
TARGETS = {"autocnc --help": 0.5, "query through the server": 1.0}


def timed(argv: Sequence[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([AUTOCNC, *argv], env=env, capture_output=True, text=True,
                              timeout=600)
        out.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"autocnc {' '.join(argv)} failed: {done.stderr}")
    return out


def load_demo(data_dir: Path) -> None:
    from ingest.demo import generate_demo
    from kg.config import load_settings
    from kg.graph import KnowledgeGraph

    kg = KnowledgeGraph.open(load_settings(data_dir=data_dir, store="embedded"), writer=True)
    try:
        kg.write(generate_demo(7).batch)
    finally:
        kg.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per case (median reported)")
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        load_demo(data)
        env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": "embedded"}
        results["autocnc --help"] = timed(["--help"], env, args.runs)
        with running_server(env):
            results["query through the server"] = timed(
                ["query", "cypher", QUERY, "-o", "json"], env, args.runs)
            results["status through the server"] = timed(["status", "-o", "json"], env,
                                                         args.runs)
        results["query standalone (opens the store)"] = timed(
            ["query", "cypher", QUERY, "-o", "json"], env, args.runs)
        results["status standalone (opens the store)"] = timed(
            ["status", "-o", "json"], env, args.runs)
    print(f"autocnc start-up, wall time of the whole process, {args.runs} runs each "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"{'case':<38} {'median s':>9} {'min s':>7} {'max s':>7}  target")
    for case, times in results.items():
        target = TARGETS.get(case)
        verdict = "" if target is None else (
            f"<= {target} s {'ok' if statistics.median(times) <= target else 'MISSED'}")
        print(f"{case:<38} {statistics.median(times):>9.3f} {min(times):>7.3f} "
              f"{max(times):>7.3f}  {verdict}")
    print(json.dumps({case: round(statistics.median(t), 3) for case, t in results.items()}))


if __name__ == "__main__":
    main()
